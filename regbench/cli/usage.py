"""The subcommands of `regbench` and the usage text: one table that the dispatcher (commands.main), --help
and shell completion (completion.py) all read."""

from __future__ import annotations

from regbench.core.version import __version__

# The subcommands, each with its usage lines: the dispatcher (main), --help and shell completion
# (cli/completion.py) all read this one table.
SUBCOMMANDS: dict[str, tuple[tuple[str, str], ...]] = {
    "run": (("[KEY=VALUE ...] [-m] [-v]", "train one configuration, or a grid with -m (-v: Hydra's log too)"),),
    "report": (("PATH... [--out DIR]", "tables, figures and report.md/html from run folders"),),
    "compare": (("A B [--metric M]", "seed-paired differences between two folders of runs"),
                ("A --where KEY=VALUE", "... or within one folder, against the runs with KEY=VALUE")),
    "list": (("", "datasets, models, dropout types, optimizers, augmentations, experiments"),),
}

_USAGES = [(f"regbench {name} {args}".rstrip(), what) for name, lines in SUBCOMMANDS.items() for args, what in lines]
_COMMAND_LINES = "\n".join(f"  {usage:<{max(len(u) for u, _ in _USAGES)}}  {what}" for usage, what in _USAGES)
USAGE = f"""regbench {__version__}: regularization ablations from the command line

usage:
{_COMMAND_LINES}

examples:
  regbench run                                        # MLP on scikit-learn digits, a few seconds on CPU
  regbench run dropout=standard dropout.p=0.3 seed=1
  regbench run -m dropout=standard dropout.p=0,0.1,0.3,0.5 seed=0,1,2
  regbench run -m +experiment=mlp_dropout
  regbench report runs/

`regbench run --help` lists every config key and group; each run writes
<results_dir>/[<sweep_name>/]<run>/ with config.yaml, metrics.csv and summary.json.
"""
