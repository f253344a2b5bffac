"""regbench: regularization ablations from the command line, and from Python.

    import regbench
    result = regbench.sweep(["dropout=standard", "dropout.p=0,0.3", "seed=0,1", "trainer.epochs=5"])
    groups = regbench.load_groups(result.dir)   # pandas: mean/std over seeds per configuration

The functions live in regbench.api and are imported on first use, so `import regbench` (and with it
the CLI's start-up) loads neither torch, Hydra nor pandas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from regbench.core.errors import ConfigError
from regbench.core.version import __version__

_API = ("load_runs", "load_curves", "load_groups", "load_comparisons", "run", "sweep", "SweepResult")
__all__ = ["ConfigError", "__version__", *_API]

if TYPE_CHECKING:
    from regbench.api import SweepResult, load_comparisons, load_curves, load_groups, load_runs, run, sweep  # noqa: F401


def __getattr__(name: str):
    if name in _API:
        from regbench import api
        return getattr(api, name)
    raise AttributeError(f"module 'regbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
