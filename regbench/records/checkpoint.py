"""Per-epoch checkpoints (`trainer.checkpoint=true`): continue an interrupted run exactly.

A checkpoint holds the model, optimizer and scheduler states, the run's Progress (rows,
best weights, early-stopping counter, the cell's random streams: data order, noise, augmentation)
and the global RNG states (what a plugin's module draws from them), so the continued run draws the
same numbers as an uninterrupted one. Written atomically; removed once the run completes.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from regbench.core.files import atomic_write_text

FILE = "checkpoint.pt"


def exists(run_dir: Path) -> bool:
    return (Path(run_dir) / FILE).is_file()


def save(run_dir: Path, model, optimizer, scheduler, progress, summary: dict, elapsed: float) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "streams": progress.streams.state(),
        "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "progress": {k: v for k, v in vars(progress).items() if k != "streams"},
        "summary": {k: v for k, v in summary.items() if k != "run_dir"},
        "elapsed": elapsed,
    }
    # Serialised in memory, then written as any other file of the run (core/files.atomic_write_text): torch.save
    # straight to a file on a full disk raised a RuntimeError ("unexpected pos") that named no file and left its
    # temporary file behind.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_text(Path(run_dir) / FILE, buffer.getvalue())


def load(run_dir: Path, model, optimizer, scheduler, progress) -> dict:
    """Restore everything in place; returns the summary dict saved with the checkpoint."""
    device = next(model.parameters()).device
    state = torch.load(Path(run_dir) / FILE, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    # a checkpoint written before the cell had streams holds only its data order
    progress.streams.load_state({k: v.cpu() for k, v in state.get("streams", {"order": state.get("order")}).items()})
    for key, value in state["progress"].items():
        setattr(progress, key, value)
    torch.set_rng_state(state["rng"].cpu())
    if state["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    summary = state["summary"]
    summary["seconds_before_resume"] = state["elapsed"]
    return summary


def remove(run_dir: Path) -> None:
    (Path(run_dir) / FILE).unlink(missing_ok=True)
