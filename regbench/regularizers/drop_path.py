"""`reg.drop_path`: stochastic depth, dropping whole residual branches.

Huang, Sun, Liu, Sedra & Weinberger, "Deep Networks with Stochastic Depth", ECCV 2016: in training a
residual block's branch is skipped (the block becomes its shortcut) with probability p_l, which rises
linearly with the block's depth, so the expected network is shallower while the full one is evaluated.

As timm and the vision-transformer recipes (DeiT) apply it: per example (each example of a batch keeps
or drops the branch on its own draw, where the paper drops it for the whole batch), inverted (a kept
branch is scaled by 1/(1-p_l), so evaluation is the plain network; the paper scales by the survival
probability at test time instead, equal in expectation) and with rates `block_rates`: from 0 at the first
block to reg.drop_path at the last (timm's torch.linspace(0, drop_path_rate, depth); Huang et al.'s
p_l = l/L * p_L starts at p_L/L instead).

One formula for a float rate and a per-cell 0-d tensor rate (a stack of cells, engine/stack.py); the
keep draws come from the cell's noise stream (streams.py), so a cell drops the same branches alone and
in a stack. (torchvision's StochasticDepth draws in place from the global generator: it cannot stack.)
"""

from __future__ import annotations

from torch import Tensor, nn

from regbench.regularizers.base import FunctionalDropout, inverted_dropout, is_off


def block_rates(rate: float, blocks: int) -> list[float]:
    """The drop-path rate of each of `blocks` residual blocks: linear from 0 to `rate` (one block: `rate`)."""
    return [rate * i / (blocks - 1) for i in range(blocks)] if blocks > 1 else [rate] * blocks


def drop_path(x: Tensor, p: float | Tensor, training: bool) -> Tensor:
    """x: (N, ...) a residual branch's output -> x with each example's branch dropped with probability p
    (one draw per example), kept ones scaled by 1/(1-p)."""
    if not training or is_off(p):
        return x
    one_per_example = x[(slice(None), *([slice(0, 1)] * (x.ndim - 1)))]  # (N, 1, ...)
    return inverted_dropout(x, p, like=one_per_example)


class DropPath(FunctionalDropout):
    """Stochastic depth on one residual branch (MC dropout also samples it: `stochastic`)."""

    fn = staticmethod(drop_path)


def drop_path_module(p: float) -> nn.Module:
    """DropPath(p), or nn.Identity at rate 0 (strength 0 is the plain network, with no draws)."""
    return DropPath(p) if p > 0 else nn.Identity()
