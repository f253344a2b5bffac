"""Optional live loggers beside the CSV (`logger=tensorboard`).

metrics.csv and summary.json are always written: they are the contract `regbench report`
reads. A logger mirrors them elsewhere while a run trains.
"""

from __future__ import annotations

from pathlib import Path

from regbench.errors import ConfigError

LOGGERS = ("csv", "tensorboard")


def check_logger(name: str) -> None:
    if name not in LOGGERS:
        raise ConfigError(f"logger={name!r} is not valid; valid choices: {', '.join(LOGGERS)}")
    if name == "tensorboard":
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError('logger=tensorboard needs the tensorboard package: pip install -e ".[tensorboard]" '
                              "(or pip install tensorboard); valid without it: logger=csv") from None


class TensorBoardLogger:
    """Scalars per epoch under <run>/tensorboard/, and the run's hyperparameters with its final
    metrics at the end (the HParams tab compares runs of a sweep: `tensorboard --logdir runs/`)."""

    def __init__(self, run_dir: Path, hparams: dict):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
        self.hparams = hparams

    def log_epoch(self, row: dict) -> None:
        epoch = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                split, _, metric = key.partition("_")
                tag = f"{metric}/{split}" if split in ("train", "val") else key  # train/val on one chart
                self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()

    def close(self, summary: dict) -> None:
        final = {f"hparam/final_{k}": v for k, v in (summary.get("final") or {}).items()}
        if summary.get("test"):
            final["hparam/test_acc"] = summary["test"]["acc"]
        if final:
            self.writer.add_hparams(self.hparams, final, run_name=".")
        self.writer.close()


def make_logger(name: str, run_dir: Path, hparams: dict):
    return TensorBoardLogger(run_dir, hparams) if name == "tensorboard" else None


def flat_hparams(cfg_dict: dict, prefix: str = "") -> dict:
    """Nested config -> {dotted.key: scalar}; lists become strings (TensorBoard takes scalars only)."""
    out = {}
    for key, value in cfg_dict.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_hparams(value, f"{name}."))
        elif value is None or isinstance(value, (list, tuple)):
            out[name] = str(value)
        else:
            out[name] = value
    return out
