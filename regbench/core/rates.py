"""The dropout config keys that set a dropout type's strength (fields of config.DropoutConfig).

Its own module, free of imports, because both sides read it: regularizers/base.py (a type's default
`rate_keys`, imported with torch) and the report (report/table.py, figures_compare.py,
dropout_types.py), which imports no torch.
"""

RATE_KEYS = ("p", "p_input", "p_conv", "per_layer")  # the first one is a type's main rate (the rate-sweep axis)
