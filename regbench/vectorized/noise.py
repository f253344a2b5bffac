"""Dropout multipliers for the stacked forward, one (M, B, D) tensor per dropout slot and step.

Two sources of randomness:
- bucket stream (default): one generator for the whole bucket, one rand/randn call per slot
  and step for all cells. Each cell gets independent masks at its own rate, but not the
  masks its sequential run would draw, so per-cell curves match sequential runs only in
  distribution (tests compare seed means).
- per-cell streams (`exact=True`, CPU only): each cell continues the global RNG state its
  sequential run has after `torch.manual_seed(seed)` + model init, and draws its masks with
  the same calls as F.dropout / gaussian_dropout (bernoulli_(1-p) then div_(1-p);
  normal_ * sigma + 1), in the same order. Curves then match the sequential run up to float
  summation order, at the price of M small RNG calls per slot and step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from regbench.vectorized.stacked import Op, StackedMLP, gaussian_sigma, keep_scale


class Noise:
    def __init__(self, net: StackedMLP, seed: int, device: torch.device, cell_generators: list | None = None):
        self.net = net
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)  # bucket stream
        self.cell_generators = cell_generators  # per-cell streams (exact mode) or None
        self._cache: dict[int, tuple[Tensor, Tensor]] = {}  # op j -> per-cell coefficients, (M, 1, 1)

    def __call__(self, op: Op, h: Tensor) -> Tensor:
        """h: (M, B, D) activations entering the slot -> multiplier of the same shape."""
        if self.cell_generators is not None:
            return self._per_cell(op, h)
        if op.j not in self._cache:
            rates = self.net.rates[op.j]
            if op.noise == "bernoulli":
                keep, scale = keep_scale(rates)
                self._cache[op.j] = keep.view(-1, 1, 1), scale.view(-1, 1, 1)
            else:
                self._cache[op.j] = gaussian_sigma(rates).view(-1, 1, 1), None
        a, b = self._cache[op.j]
        if op.noise == "bernoulli":  # keep where u < keep (never at keep = 1: u < 1 always), scale by 1/keep
            u = torch.rand(h.shape, generator=self.generator, device=self.device)
            return (u < a) * b
        return torch.randn(h.shape, generator=self.generator, device=self.device).mul_(a).add_(1.0)

    def _per_cell(self, op: Op, h: Tensor) -> Tensor:
        rates = self.net.rates[op.j].tolist()
        masks = []
        for p, g in zip(rates, self.cell_generators, strict=True):
            if p == 0.0:  # the sequential model has nn.Identity here: no draw
                masks.append(torch.ones(h.shape[1:], device=self.device))
            elif op.noise == "bernoulli":  # F.dropout on CPU: empty_like(x).bernoulli_(1-p).div_(1-p)
                masks.append(torch.empty(h.shape[1:], device=self.device).bernoulli_(1 - p, generator=g).div_(1 - p))
            else:  # regularizers.gaussian: randn_like(x).mul_(sigma).add_(1)
                sigma = math.sqrt(p / (1.0 - p))
                masks.append(torch.empty(h.shape[1:], device=self.device).normal_(generator=g).mul_(sigma).add_(1.0))
        return torch.stack(masks)

    def select(self, keep: list[int]) -> None:
        self._cache.clear()
        if self.cell_generators is not None:
            self.cell_generators = [self.cell_generators[i] for i in keep]


def global_rng_copy() -> torch.Generator:
    """A CPU generator continuing from the current global RNG state (what a sequential run draws next)."""
    g = torch.Generator()
    g.set_state(torch.get_rng_state())
    return g
