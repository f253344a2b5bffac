"""M MLPs of one shape as one stacked model: every parameter gets a leading cell dim M.

The cells' ordinary models are built first (exactly as `train.prepare` does), then their
parameters are stacked, so initial weights are identical to the sequential runs. The
forward is written by hand over the stacked tensors:

    Linear       x (M, B, in) -> baddbmm(bias (M, 1, out), x, W^T (M, in, out)) -> (M, B, out);
                 W^T is what is stored (and what the optimizer updates), the cell's W is its transpose
    BatchNorm1d  per cell and feature: the (M, B, D) batch is laid out as (B, M*D) so one
                 F.batch_norm call treats every (cell, feature) pair as its own channel:
                 torch's own kernel, and running stats that stay per cell
    activation   elementwise: the cell's module applied to the whole stack
    dropout      per-cell rates: keep mask rand(M, B, D) < keep[M, 1, 1], scaled by 1/keep
                 (gaussian: noise N(1, p/(1-p)) with a per-cell sigma)

Evaluation shares one input between all cells, so the first layer is one GEMM
(n, in) @ (in, M*out) instead of M small ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from regbench.models import ACTIVATIONS
from regbench.regularizers.gaussian import GaussianDropout

ZERO_TOL = 1e-3  # same tolerance as regularizers.penalties.ZERO_TOL (the zero_frac column)
EVAL_FLOATS = 2**24  # activations per evaluation chunk (64 MiB of float32), bounds eval memory for large M


class NotStackable(ValueError):
    """The cells' models cannot be stacked (a module without a stacked form)."""


@dataclass
class Op:
    """One step of the stacked forward, in model order."""

    kind: str  # linear | bn | act | drop
    j: int  # position in the cell model's `net` Sequential (names its parameters: net.{j}.weight)
    module: nn.Module | None = None  # act: the (elementwise) activation module; bn: the cell-0 BatchNorm
    noise: str = ""  # drop: bernoulli | gaussian


class StackedMLP:
    """Parameters and buffers as (M, ...) tensors keyed by the cell model's state_dict keys."""

    def __init__(self, models: list[nn.Module], device: torch.device):
        self.M = len(models)
        self.ops: list[Op] = []
        self.params: dict[str, Tensor] = {}  # state_dict key -> (M, *shape) leaf tensor, requires grad
        self.buffers: dict[str, Tensor] = {}  # BN running_mean / running_var: (M, D)
        self.rates: dict[int, Tensor] = {}  # drop op j -> (M,) float64 rate p per cell (0: Identity)
        self.bn_batches = 0  # BatchNorm num_batches_tracked (every cell takes the same steps)
        self.bn_keys: list[str] = []
        self.transposed: set[str] = set()  # keys stored as (M, in, out) instead of the module's (out, in)
        seqs = [m.net for m in models]
        for j, mod in enumerate(seqs[0]):
            mods = [s[j] for s in seqs]
            if isinstance(mod, nn.Flatten):
                continue  # inputs arrive flattened: (N, D)
            if isinstance(mod, nn.Linear):  # weights stored transposed, (M, in, out): see _stack
                self._stack(mods, j, ("weight", "bias"), device, transpose=True)
                self.ops.append(Op("linear", j))
            elif isinstance(mod, nn.BatchNorm1d):
                self._stack(mods, j, ("weight", "bias"), device)
                for name in ("running_mean", "running_var"):
                    self.buffers[f"net.{j}.{name}"] = torch.stack([getattr(m, name) for m in mods]).to(device)
                self.bn_keys.append(f"net.{j}.num_batches_tracked")
                self.ops.append(Op("bn", j, module=mod))
            elif all(isinstance(m, (nn.Identity, nn.Dropout, GaussianDropout)) for m in mods):
                kinds = {type(m) for m in mods} - {nn.Identity}
                if len(kinds) > 1:
                    raise NotStackable(f"mixed dropout modules at net.{j}: {sorted(k.__name__ for k in kinds)}")
                rates = [0.0 if isinstance(m, nn.Identity) else float(m.p) for m in mods]
                if any(rates):  # a slot where every cell has rate 0 is absent (nn.Identity), like the baseline
                    self.rates[j] = torch.tensor(rates, dtype=torch.float64, device=device)
                    self.ops.append(Op("drop", j, noise="gaussian" if GaussianDropout in kinds else "bernoulli"))
            elif type(mod) in ACTIVATIONS.values() and all(type(m) is type(mod) for m in mods):
                self.ops.append(Op("act", j, module=mod.to(device)))
            else:
                raise NotStackable(f"no stacked form for {type(mod).__name__} at net.{j}")
        self.decay = {k: v.dim() >= 3 for k, v in self.params.items()}  # the cell's weight has >= 2 dims

    def _stack(self, mods, j: int, names: tuple[str, ...], device, transpose: bool = False) -> None:
        """Linear weights are kept as W^T, (M, in, out), contiguous: the forward is then a plain
        baddbmm and its weight gradient arrives contiguous (a transposed view's gradient would be
        copied into the parameter's layout every step)."""
        for name in names:
            if getattr(mods[0], name, None) is not None:
                ts = [getattr(m, name).detach() for m in mods]
                if transpose and name == "weight":
                    ts = [t.t() for t in ts]
                    self.transposed.add(f"net.{j}.{name}")
                self.params[f"net.{j}.{name}"] = torch.stack(ts).to(device).contiguous().requires_grad_(True)

    # ------------------------------------------------------------------ forward

    def forward(self, x: Tensor, train: bool, masks=None) -> Tensor:
        """x: (M, B, D) per-cell batches, or (n, D) one input shared by all cells. -> logits (M, B|n, K).

        masks(op, h) -> multiplier for h (M, B, D) in training (see noise.py); eval needs none.
        """
        shared = x.dim() == 2
        for op in self.ops:
            if op.kind == "linear":
                wt, b = self.params[f"net.{op.j}.weight"], self.params.get(f"net.{op.j}.bias")  # (M,in,out), (M,out)
                if shared:  # (n, in) @ (in, M*out): one GEMM for all cells
                    w2 = wt.permute(1, 0, 2).reshape(wt.shape[1], -1)
                    x = (x @ w2).view(x.shape[0], self.M, -1).transpose(0, 1)
                    x = x if b is None else x + b.unsqueeze(1)
                    shared = False
                elif b is None:
                    x = torch.bmm(x, wt)
                else:
                    x = torch.baddbmm(b.unsqueeze(1), x, wt)
            elif op.kind == "bn":
                x = self._batch_norm(op, x, train)
            elif op.kind == "act":
                x = op.module(x)
            elif op.kind == "drop" and train:
                x = x * masks(op, x)
        if shared:  # a model with no hidden layer would never reach here (the output Linear is always there)
            raise AssertionError("stacked forward ended with a shared input")
        return x

    def _batch_norm(self, op: Op, x: Tensor, train: bool) -> Tensor:
        m, n, d = x.shape
        key = f"net.{op.j}"
        flat = x.transpose(0, 1).reshape(n, m * d)  # (B, M*D): each (cell, feature) is a channel
        out = F.batch_norm(flat, self.buffers[f"{key}.running_mean"].view(-1),
                           self.buffers[f"{key}.running_var"].view(-1),
                           self.params[f"{key}.weight"].view(-1), self.params[f"{key}.bias"].view(-1),
                           training=train, momentum=op.module.momentum, eps=op.module.eps)
        return out.view(n, m, d).transpose(0, 1)

    def count_bn_step(self) -> None:
        if self.bn_keys:
            self.bn_batches += 1

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor, autocast) -> Tensor:
        """Every cell on the same (x (n, D), y (n,)), eval mode -> (M, 2) float64 [mean loss, accuracy].

        Mirrors evaluate.loss_and_correct (float32 loss per chunk, float64 accumulation); the
        chunk is sized so M * chunk * widest layer stays under EVAL_FLOATS.
        """
        widest = max(v.shape[2] for k, v in self.params.items() if k in self.transposed)
        chunk = max(1, min(2048, EVAL_FLOATS // (self.M * widest)))
        loss_sum = torch.zeros(self.M, dtype=torch.float64, device=x.device)
        correct = torch.zeros(self.M, dtype=torch.int64, device=x.device)
        for i in range(0, len(x), chunk):
            xb, yb = x[i : i + chunk], y[i : i + chunk]
            with autocast():
                logits = self.forward(xb, train=False)  # (M, n, K)
            k = logits.shape[-1]
            losses = F.cross_entropy(logits.float().reshape(-1, k), yb.repeat(self.M), reduction="none")
            loss_sum += losses.view(self.M, -1).sum(1).double()
            correct += (logits.argmax(-1) == yb).sum(1)
        n = max(len(x), 1)
        return torch.stack([loss_sum / n, correct.double() / n], 1)

    @torch.no_grad()
    def zero_fraction(self) -> Tensor:
        """(M,) fraction of weights (>= 2-dim in the cell) with |w| < ZERO_TOL, as in penalties.zero_fraction."""
        ws = [p for k, p in self.params.items() if self.decay[k]]
        near = sum((w.abs() < ZERO_TOL).flatten(1).sum(1) for w in ws)
        return near.double() / sum(w[0].numel() for w in ws)

    # ------------------------------------------------------------------ per-cell state

    def cell_state(self, m: int) -> dict[str, Tensor]:
        """Cell m's weights in its own model's state_dict format (cloned: a snapshot)."""
        state = {k: (v[m].t() if k in self.transposed else v[m]).detach().clone()
                 for k, v in {**self.params, **self.buffers}.items()}
        for key in self.bn_keys:
            state[key] = torch.tensor(self.bn_batches, dtype=torch.long)
        return state

    def select(self, keep: Tensor) -> None:
        """Keep only the cells at positions `keep` (a stopped cell costs nothing afterwards)."""
        self.M = len(keep)
        self.params = {k: v.detach()[keep].requires_grad_(True) for k, v in self.params.items()}
        self.buffers = {k: v[keep] for k, v in self.buffers.items()}
        self.rates = {j: r[keep] for j, r in self.rates.items()}

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def l1(self) -> Tensor:
        """(M,) sum |w| over each cell's weights (regularizers.penalties.l1_penalty, per cell)."""
        return sum(p.abs().flatten(1).sum(1) for k, p in self.params.items() if self.decay[k])

    @torch.no_grad()
    def max_norm_(self, c: Tensor) -> None:
        """penalties.apply_max_norm_ per cell: c (M,) float32, inf where the cell has no constraint."""
        for k, w in self.params.items():
            if self.decay[k]:
                norms = w.norm(dim=1, keepdim=True)  # (M, 1, out): each unit's incoming weights (W^T columns)
                w.mul_(torch.clamp(c.view(-1, 1, 1) / (norms + 1e-12), max=1.0))


def bytes_per_cell(model: nn.Module, batch_size: int, input_dim: int, optimizer: str) -> int:
    """Rough memory of one cell in a bucket: weights in several copies plus training activations.

    weights: param + grad + optimizer state (2 for Adam, 1 for SGD) + best snapshot + the cell's own
    module; activations: per layer input, output, mask and their grads for one batch.
    """
    n_params = sum(p.numel() for p in model.parameters())
    copies = 4 + (2 if optimizer.startswith("adam") else 1)
    widths = [input_dim] + [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    activations = 6 * batch_size * sum(widths)
    return 4 * (copies * n_params + activations)


def keep_scale(rates: Tensor) -> tuple[Tensor, Tensor]:
    """(M,) float64 rates -> float32 keep probability and 1/keep, as F.dropout computes them (float32)."""
    keep = (1.0 - rates).float()
    return keep, 1.0 / keep


def gaussian_sigma(rates: Tensor) -> Tensor:
    """(M,) float64 rates -> float32 sigma = sqrt(p / (1 - p)) (regularizers.gaussian), 0 where p = 0."""
    return torch.tensor([math.sqrt(p / (1.0 - p)) for p in rates.tolist()], device=rates.device)
