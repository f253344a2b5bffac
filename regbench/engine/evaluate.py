"""Deterministic evaluation: loss and accuracy, accumulated on the device (no host sync here).

`eval.mode=train` measures the "forgot `model.eval()`" mistake: dropout stays on and
BatchNorm normalises each evaluation batch with its own statistics. Calibration and MC
dropout live in `regbench.engine.uncertainty`.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from regbench.regularizers import streams

EVAL_BATCH = 2048  # examples per forward pass in evaluation: large, since no graph is kept


def fork_rng(device: torch.device):
    """Random draws made inside leave the global RNG (CPU and `device`) as they found it."""
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[device], device_type=device.type)


@contextlib.contextmanager
def restore_modes(model):
    """Give every module back the train/eval mode it had on entry (not one flag for the whole model)."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def eval_mode(model, mode: str = "eval", generator: torch.Generator | None = None):
    """Put the model in `mode` ("eval" | "train") for an evaluation, and undo every side effect after.

    mode="train" is the deliberate mistake. In train mode BatchNorm uses batch statistics
    and *updates its running stats* with the evaluation data, and dropout draws masks (here
    from `generator`, the cell's evaluation stream). The bug in the wild corrupts both; here every
    buffer (BN running stats, num_batches_tracked) and the global RNG state are put back, so the evaluation mode changes
    only the numbers measured, never the model that continues training: a run with
    eval.mode=train trains bit for bit like one with eval.mode=eval (on CPU), and the
    difference between the two is the cost of the mistake in measurement and model
    selection (best epoch, early stopping), nothing else.
    """
    with restore_modes(model):
        if mode == "eval":
            model.eval()
            yield model
            return
        if mode != "train":
            raise ValueError(f"eval mode must be 'eval' or 'train', got {mode!r}")
        saved = {name: b.detach().clone() for name, b in model.named_buffers()}
        device = next(model.parameters()).device
        try:
            with fork_rng(device), streams.drawing([generator]):
                model.train()
                yield model
        finally:
            with torch.no_grad():
                for name, b in model.named_buffers():
                    b.copy_(saved[name])


@torch.no_grad()
def loss_and_correct(model, x: torch.Tensor, y: torch.Tensor, normalize, autocast, mode: str = "eval",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Returns a device tensor [mean loss, accuracy] over (x, y), with the model in `mode` (eval unless told;
    mode=train draws its masks from `generator`).

    x is the compact stored form (uint8 images or float signals); normalize turns a batch
    into the float input of the model. The caller decides when to sync (.tolist()).
    """
    with eval_mode(model, mode, generator):
        return score(model, x, y, normalize, autocast)


@torch.no_grad()
def score(forward, x: torch.Tensor, y: torch.Tensor, normalize, autocast) -> torch.Tensor:
    """[mean loss, accuracy] of `forward` (a batch -> logits callable, in the mode it should be
    scored in) over (x, y), EVAL_BATCH examples at a time -> a (2,) device tensor."""
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(x), EVAL_BATCH):
        xb, yb = normalize(x[i : i + EVAL_BATCH]), y[i : i + EVAL_BATCH]
        with autocast():
            logits = forward(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    n = max(len(x), 1)
    return torch.stack([loss_sum / n, correct.double() / n])
