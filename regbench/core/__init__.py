"""Leaves every layer may use: errors, the registry type, console output, the version, shared names.

- errors.py    ConfigError (bad input, exit 2), machine failures, the exit codes
- registry.py  Registry: a dict filled by a decorator; duplicate and unknown names raise
- console.py   terminal lines and progress bars (tqdm)
- version.py   __version__
- dropout_types.py  a built-in dropout type's colour and rate keys, free of torch (regularizers and the report read it)
- model_kinds.py    the model names and which of them have conv maps, residual blocks, hidden layers (free of torch)
- files.py     atomic file writes (a temporary name, fsync, rename)

Imports nothing of regbench outside this package.
"""
