"""Deterministic evaluation: loss and accuracy, accumulated on the device (no host sync here)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

EVAL_BATCH = 2048  # examples per forward pass in evaluation: large, since no graph is kept


@torch.no_grad()
def loss_and_correct(model, x: torch.Tensor, y: torch.Tensor, normalize, autocast) -> torch.Tensor:
    """Returns a device tensor [mean loss, accuracy] over (x, y), with the model in eval mode.

    x is the compact stored form (uint8 images or float signals); normalize turns a batch
    into the float input of the model. The caller decides when to sync (.tolist()).
    """
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device, dtype=torch.float64)
    correct = torch.zeros((), device=x.device, dtype=torch.int64)
    for i in range(0, len(x), EVAL_BATCH):
        xb, yb = normalize(x[i : i + EVAL_BATCH]), y[i : i + EVAL_BATCH]
        with autocast():
            logits = model(xb)
        loss_sum += F.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    model.train(was_training)
    n = max(len(x), 1)
    return torch.stack([loss_sum / n, correct.double() / n])
