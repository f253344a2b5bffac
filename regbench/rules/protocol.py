"""The evaluation protocol: which epoch is "best", when to stop early, which weights score the test split.

Two choices move a headline number a lot and are therefore explicit config keys, recorded in
every summary.json (`protocol`):

- `trainer.select=final|val_loss|val_acc`: the weights that score the test split. `final` (the
  default) is how MNIST-1D, CIFAR and most regularization papers report: train for the stated
  budget, score the last weights. `val_loss` / `val_acc` keep the weights of the epoch with the
  lowest validation loss / highest validation accuracy (model selection on the validation split).
- `trainer.monitor=val_loss|val_acc`: what early stopping (`trainer.patience`) watches. Unset, it
  follows `select` (and is val_loss when select=final).

The training loop calls `Tracker.update` once per epoch (returns whether to stop) and
`Protocol.weights_to_score` at the end; both are plain functions of numbers, so any loop
(single or stacked cells) can use them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from regbench.core.errors import ConfigError

SELECT_CHOICES = ("final", "val_loss", "val_acc")  # trainer.select
MONITOR_CHOICES = ("val_loss", "val_acc")  # trainer.monitor
DEFAULT_SELECT = "final"  # the field's convention: the last weights score the test split
# Direction of each monitored quantity: +1 = higher is better.
_SIGN = {"val_loss": -1.0, "val_acc": 1.0}
# Keys that no longer exist, with what replaced them (the CLI's "unknown key" error names it).
RENAMED = {"trainer.restore_best": "trainer.select (valid: final, val_loss, val_acc; "
                                   "restore_best=true was trainer.select=val_loss)"}


def improved(quantity: str, value: float, best: float, min_delta: float = 0.0) -> bool:
    """Is `value` of `quantity` better than `best` by more than min_delta? (NaN never is.)"""
    if not math.isfinite(value):
        return False
    if not math.isfinite(best):
        return True
    return _SIGN[quantity] * (value - best) > min_delta


@dataclass(frozen=True)
class Protocol:
    select: str = DEFAULT_SELECT  # final | val_loss | val_acc: the weights that score the test split
    monitor: str = "val_loss"  # val_loss | val_acc: what early stopping watches
    patience: int | None = None  # early stopping after this many epochs without improvement (None = off)
    min_delta: float = 0.0  # an improvement smaller than this does not count

    @classmethod
    def from_trainer(cls, tr) -> Protocol:
        """Read trainer.select / monitor / patience / min_delta; refuses bad or ineffective values."""
        check(tr)
        monitor = tr.monitor or (tr.select if tr.select != "final" else "val_loss")
        return cls(select=tr.select, monitor=monitor, patience=tr.patience, min_delta=float(tr.min_delta))

    def describe(self) -> dict:
        """What summary.json records under `protocol`."""
        return {"select": self.select, "monitor": self.monitor if self.patience is not None else None,
                "patience": self.patience, "min_delta": self.min_delta}

    def weights_to_score(self, tracker: Tracker) -> str:
        """'final' or 'selected': which weights score the test split at the end of a run."""
        if self.select == "final" or tracker.selected_state is None:
            return "final"
        return "selected"


def check(tr) -> None:
    """One-line errors for bad trainer.select / trainer.monitor values (called by config validation)."""
    if tr.select not in SELECT_CHOICES:
        raise ConfigError(f"trainer.select={tr.select!r} is not valid; valid choices: {', '.join(SELECT_CHOICES)}")
    if tr.monitor is not None and tr.monitor not in MONITOR_CHOICES:
        raise ConfigError(f"trainer.monitor={tr.monitor!r} is not valid; valid choices: {', '.join(MONITOR_CHOICES)}")
    # trainer.monitor without trainer.patience cannot take effect: refused with the other such keys
    # (regbench/rules/active.py RULES), on the command line


@dataclass
class Tracker:
    """Per-run state of the protocol, saved whole in a checkpoint (kept on the run's Progress).

    best_*: the epoch that is best by `select` (by `monitor` when select=final), reported as
    best_epoch / best in summary.json; stop_best / bad_epochs: early stopping on `monitor`.
    """

    best_epoch: int = 0
    best_value: float = math.nan
    best_row: dict | None = None
    selected_state: dict | None = None  # weights at best_epoch, kept only when select != final
    stop_best: float = math.nan
    bad_epochs: int = 0  # epochs since `monitor` last improved

    def update(self, protocol: Protocol, epoch: int, row: dict, snapshot) -> bool:
        """Record one epoch's row; `snapshot()` returns the weights (called only when they are kept).

        Returns True when early stopping says: stop after this epoch.
        """
        ranked_by = protocol.select if protocol.select != "final" else protocol.monitor
        if improved(ranked_by, row[ranked_by], self.best_value, protocol.min_delta):
            self.best_epoch, self.best_value, self.best_row = epoch, row[ranked_by], row
            if protocol.select != "final":
                self.selected_state = snapshot()
        if improved(protocol.monitor, row[protocol.monitor], self.stop_best, protocol.min_delta):
            self.stop_best, self.bad_epochs = row[protocol.monitor], 0
        else:
            self.bad_epochs += 1
        return protocol.patience is not None and self.bad_epochs >= protocol.patience
