"""The command line: `regbench run | report | compare | list`, completion, the catalogue of names.

- commands.py    the dispatcher in front of Hydra: argv -> a run, a sweep, a report; user errors
                 -> one line and exit 2
- usage.py       the subcommands and the usage text: the dispatcher, --help and completion read them
- report_commands.py  `regbench report` and `regbench compare`: their arguments, errors and output
- hydra_errors.py  Hydra's / OmegaConf's errors as one line naming the value, key or file
- completion.py  shell completion (`regbench run -sc install=bash`)
- catalog.py     `regbench list`: every name a user can choose, read from the registries

The top layer under the Python API: it may import every package below it (sweeps, report,
engine, records, rules, the catalogue, core); nothing but `regbench.api` imports it.
`console_main` is the console script's entry point (`regbench = "regbench.cli:console_main"` in
pyproject.toml): `main`, then an exit without the interpreter's last garbage collection.
"""

from regbench.cli.commands import console_main, main

__all__ = ["console_main", "main"]
