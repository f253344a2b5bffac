"""Leaves every layer may use: errors, the registry type, console output, the version, shared names.

- errors.py    ConfigError (bad input, exit 2), machine failures, the exit codes
- registry.py  Registry: a dict filled by a decorator; duplicate and unknown names raise
- console.py   terminal lines and progress bars (tqdm)
- version.py   __version__
- rates.py     the dropout keys that set a type's strength (read by regularizers and the report)
- files.py     atomic file writes (a temporary name, fsync, rename)

Imports nothing of regbench outside this package.
"""
