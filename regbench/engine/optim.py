"""torch.optim's update rules on stacked (M, ...) parameters with per-cell lr, weight decay, momentum.

Each rule follows torch's single-tensor implementation (what torch.optim uses on CPU) line
by line, with the scalar hyper-parameters replaced by (M, 1, ..., 1) tensors:

  sgd   (coupled L2)  g += wd*p;  buf = mom*buf + g;  d = g + mom*buf (nesterov) | buf;  p -= lr*d
  sgdw  (decoupled)   p *= 1 - lr*wd, then sgd without wd           (regbench.engine.optimizers.SGDW)
  adam  (coupled L2)  g += wd*p;  m = lerp(m, g, 1-b1);  v = b2*v + (1-b2)*g^2;
                      p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)
  adamw (decoupled)   p *= 1 - lr*wd, then adam without wd

Weight decay applies to `decay` params only: the cell's weights with >= 2 dims, unless
optim.decay_norm_and_bias (regbench.engine.optimizers.param_groups). lr is base_lr * factor(step), the
factor of regbench.engine.optimizers's LambdaLR, the same for every cell of a stack.
Buffers start at zero: mom*0 + g == g exactly, so the first step equals torch's clone(g).

On CPU and CUDA the same rules run through torch's fused kernels (torch._fused_adam_,
_fused_adamw_, _fused_sgd_: what `fused=True` optimizers call), one call per run of cells
that share (lr, wd, momentum), on slices of the stacked tensors: one pass over memory
instead of ~8 elementwise ops. The tensor formulas below are the reference and the path
for other devices.
"""

from __future__ import annotations

import torch
from torch import Tensor

BETAS = (0.9, 0.999)  # torch.optim.Adam / AdamW defaults, which regbench.engine.optimizers uses
EPS = 1e-8


class StackedOptimizer:
    def __init__(self, params: dict[str, Tensor], decay: dict[str, bool], optim_cfgs: list, device: torch.device):
        first = optim_cfgs[0]
        self.name = "sgdw" if first.name == "sgd" and first.decoupled else first.name
        self.nesterov = bool(first.nesterov)
        self.decay = {k: d or bool(first.decay_norm_and_bias) for k, d in decay.items()}

        def per_cell(key: str) -> Tensor:  # float64 so lr*wd etc. round like torch's Python floats
            return torch.tensor([float(c[key]) for c in optim_cfgs], dtype=torch.float64, device=device)

        self.base_lr, self.wd, self.momentum = per_cell("lr"), per_cell("weight_decay"), per_cell("momentum")
        self.any_wd = bool((self.wd > 0).any())
        self.state: dict[str, dict[str, Tensor]] = {}
        self.steps = 0
        # torch's fused CPU/CUDA kernels (one pass over memory instead of ~8) on runs of cells that share
        # (lr, wd, momentum); elsewhere (mps) the per-cell tensor formulas below
        self.fused = device.type in ("cpu", "cuda") and hasattr(torch, "_fused_adam_")
        self.step_t = torch.zeros((), dtype=torch.float32, device=device)  # Adam's step count, as fused Adam reads it
        self._runs = self._equal_runs()

    def _equal_runs(self) -> list[tuple[int, int, float, float, float]]:
        """Maximal runs [a, b) of consecutive cells with equal (lr, wd, momentum) (the caller sorts cells by them)."""
        rows = list(zip(self.base_lr.tolist(), self.wd.tolist(), self.momentum.tolist(), strict=True))
        runs, a = [], 0
        for b in range(1, len(rows) + 1):
            if b == len(rows) or rows[b] != rows[a]:
                runs.append((a, b, *rows[a]))
                a = b
        return runs

    def lr(self, factor: float) -> Tensor:
        return self.base_lr * factor  # (M,) float64

    @torch.no_grad()
    def step(self, params: dict[str, Tensor], factor: float) -> None:
        self.steps += 1
        if self.fused:
            self._fused_step(params, factor)
            return
        lr = self.lr(factor)
        for key, p in params.items():
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)  # broadcast (M,) over the cell's dims
            use_wd = self.any_wd and self.decay[key]
            if use_wd and self.name in ("sgdw", "adamw"):  # decoupled: shrink the weights first
                p.mul_((1 - lr * self.wd).float().view(shape))
            g = p.grad
            if use_wd and self.name in ("sgd", "adam"):  # coupled L2: decay enters the gradient
                g = g.addcmul(p, self.wd.float().view(shape))
            if self.name in ("sgd", "sgdw"):
                self._sgd(key, p, g, lr.float().view(shape), shape)
            else:
                self._adam(key, p, g, lr, shape)

    def _sgd(self, key: str, p: Tensor, g: Tensor, lr: Tensor, shape) -> None:
        mom = self.momentum.float().view(shape)
        st = self.state.setdefault(key, {"buf": torch.zeros_like(p)})
        buf = st["buf"].mul_(mom).add_(g)
        d = g.addcmul(buf, mom) if self.nesterov else buf
        p.addcmul_(d, lr, value=-1)

    def _adam(self, key: str, p: Tensor, g: Tensor, lr: Tensor, shape) -> None:
        b1, b2 = BETAS
        st = self.state.setdefault(key, {"exp_avg": torch.zeros_like(p), "exp_avg_sq": torch.zeros_like(p)})
        st["exp_avg"].lerp_(g, 1 - b1)
        st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
        bc1, bc2 = 1 - b1**self.steps, 1 - b2**self.steps
        step_size = (lr / bc1).float().view(shape)
        denom = (st["exp_avg_sq"].sqrt() / bc2**0.5).add_(EPS)
        p.addcmul_(st["exp_avg"] / denom, step_size, value=-1)

    def _fused_step(self, params: dict[str, Tensor], factor: float) -> None:
        """One torch._fused_* call per run of equal hyper-parameters and decay group, on (b-a, ...) slices."""
        self.step_t.add_(1)
        adam = self.name in ("adam", "adamw")
        for key, p in params.items():
            if key not in self.state:
                names = ("exp_avg", "exp_avg_sq") if adam else ("buf",)
                self.state[key] = {n: torch.zeros_like(p) for n in names}
        for a, b, base_lr, wd, mom in self._runs:
            lr = base_lr * factor  # a Python float, exactly as LambdaLR sets the group's lr
            for decay in (True, False):
                keys = [k for k, p in params.items() if self.decay[k] == decay and p.grad is not None]
                if not keys:
                    continue
                ps = [params[k].detach()[a:b] for k in keys]
                gs = [params[k].grad[a:b] for k in keys]
                w = wd if decay else 0.0
                if adam:
                    fn = torch._fused_adamw_ if self.name == "adamw" else torch._fused_adam_
                    fn(ps, gs, [self.state[k]["exp_avg"][a:b] for k in keys],
                       [self.state[k]["exp_avg_sq"][a:b] for k in keys], [], [self.step_t] * len(keys), lr=lr,
                       beta1=BETAS[0], beta2=BETAS[1], weight_decay=w, eps=EPS, amsgrad=False, maximize=False)
                    continue
                if self.name == "sgdw" and w:  # regbench.engine.optimizers.SGDW: p *= 1 - lr*wd, then SGD without decay
                    torch._foreach_mul_(ps, 1 - lr * w)
                    w = 0.0
                bufs = [self.state[k]["buf"][a:b] for k in keys] if mom else []
                torch._fused_sgd_(ps, gs, bufs, weight_decay=w, momentum=mom, lr=lr, dampening=0.0,
                                  nesterov=self.nesterov, maximize=False, is_first_step=False)

    def select(self, keep: Tensor) -> None:
        """Keep the cells at positions `keep` (mirrors engine.stack.Stacked.select)."""
        self.base_lr, self.wd, self.momentum = self.base_lr[keep], self.wd[keep], self.momentum[keep]
        self.state = {k: {n: t[keep] for n, t in st.items()} for k, st in self.state.items()}
        self._runs = self._equal_runs()
