"""A stack of M cells: the cells' own models trained as one, with per-cell values as tensors.

Every cell's model is built by regbench.models.build_model, seeded exactly as a lone run
seeds it, so there is one model definition and identical initial weights. Then:

- M = 1 (`Lone`): the model itself, torch.optim and its schedule, the penalties on the
  module. trainer.compile, channels_last and checkpoints apply here.
- M > 1 (`Stacked`): torch.func lifts the one model. `stack_module_state` turns every
  parameter and buffer into an (M, *shape) tensor; `vmap(functional_call, randomness=
  "error")` runs a template copy of the model once per cell with its own weights,
  BatchNorm statistics and dropout masks, each cell's masks drawn from its own noise stream
  (regularizers/streams.py), so a cell draws the same numbers alone and in any stack. Each
  dropout rate becomes a 0-d buffer `p` of the template (an (M,) tensor in the stack), so
  cells that differ in rates share one forward; a cell whose slot is nn.Identity (rate 0) gets rate 0 there, which the
  regularizers' tensor formulas turn into the identity. The optimizer (engine/optim.py)
  holds per-cell lr / weight decay / momentum; L1, max-norm and label smoothing are (M,)
  tensors here.

Chosen by measurement against the alternative, a native cell dim (a hand-written stacked
MLP on baddbmm, a CNN as grouped convolutions), timed side by side in one process for 32
cells on the project's CPU: vmap was within 10 % of the hand-written MLP step and no slower
than the grouped-conv CNN step, and it covers every module the models use (every dropout
type, BatchNorm, DropConnect's weight masks) with no second model code.

Both classes answer the loop (engine/loop.py) in (M, ...) shapes: forward (M, B, ...) ->
(M, B, K), losses -> (M,), evaluate -> (M, 2).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from regbench.engine.evaluate import loss_and_correct, restore_modes, score
from regbench.engine.optim import StackedOptimizer
from regbench.engine.optimizers import build_optimizer, lr_factor
from regbench.engine.uncertainty import is_stochastic
from regbench.regularizers import penalties, streams

NORM_EPS = 1e-12  # same guard as penalties.apply_max_norm_


def signature(model: nn.Module) -> tuple:
    """What must be equal for two cells to stack: parameter/buffer names and shapes, and every
    module's type, where dropout slots (nn.Identity or a parameter-free stochastic module) match."""
    tensors = tuple((k, tuple(v.shape)) for k, v in model.state_dict().items())
    kinds = tuple((name, "slot" if _is_slot(m) else type(m).__name__) for name, m in model.named_modules())
    return tensors, kinds


def _is_slot(m: nn.Module) -> bool:
    return isinstance(m, nn.Identity) or (is_stochastic(m) and not any(True for _ in m.parameters(recurse=False))
                                          and not list(m.children()))


class Lone:
    """A stack of one: the cell's model as it is."""

    def __init__(self, model: nn.Module, cfg, steps_per_epoch: int, cell_streams: streams.Streams):
        self.M, self.model, self.cfg, self.streams = 1, model, cfg, cell_streams
        self.optimizer, self.scheduler = build_optimizer(cfg.optim, model, cfg.trainer.epochs, steps_per_epoch)
        # The compiled module shares the model's parameters; state_dicts and evaluation use `model`.
        self._forward = torch.compile(model) if cfg.trainer.compile else model
        self._layout = torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format
        self.scheduled = [m for m in model.modules() if hasattr(m, "set_progress")]  # DropBlock's ramp
        # read once: a config lookup costs microseconds, a step of a small model not many more
        self.smoothing, self.l1, self.max_norm = cfg.reg.label_smoothing, cfg.reg.l1, cfg.reg.max_norm
        self.weights = penalties.weights(model)  # updated in place by every step: the same tensors throughout

    def train(self) -> None:
        self.model.train()

    def forward(self, xb: Tensor) -> Tensor:  # (1, B, ...) -> (1, B, K)
        with streams.drawing([self.streams.noise]):
            return self._forward(xb[0].contiguous(memory_format=self._layout))[None]

    def losses(self, logits: Tensor, yb: Tensor) -> Tensor:  # -> (1,)
        return F.cross_entropy(logits[0].float(), yb[0], label_smoothing=self.smoothing).view(1)

    def objective(self, losses: Tensor) -> Tensor:
        loss = losses[0]
        return loss + self.l1 * penalties.l1_penalty(self.weights) if self.l1 > 0 else loss

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.optimizer.step()
        self.scheduler.step()
        if self.max_norm is not None:
            penalties.apply_max_norm_(self.weights, self.max_norm)

    def lrs(self) -> list[float]:
        return [self.optimizer.param_groups[0]["lr"]]

    def evaluate(self, x: Tensor, y: Tensor, normalize, autocast, mode: str) -> Tensor:  # -> (1, 2)
        return loss_and_correct(self.model, x, y, normalize, autocast, mode, self.streams.evaluation)[None]

    def zero_fraction(self) -> Tensor:  # -> (1,)
        return penalties.zero_fraction(self.weights).view(1)

    def cell_state(self, m: int) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def load_cell(self, m: int, model: nn.Module) -> None:
        """Give cell m's current weights to its own model (here: they are already there)."""

    def select(self, keep: list[int]) -> None:
        """Keep the cells at positions `keep` (a stack of one only ever loses its cell)."""


class Stacked:
    """M > 1 cells of one structure as (M, ...) tensors, run through vmap over one template model."""

    def __init__(self, models: list[nn.Module], cfgs: list, steps_per_epoch: int, device: torch.device,
                 noise: list[torch.Generator]):
        self.M, self.noise = len(models), list(noise)  # noise[m]: cell m's stream of forward-pass draws
        self.template = _template(models)
        self.rate_keys = [name for name, m in self.template.named_modules() if _holds_rate(m)]
        rates = {f"{n}.p": [_rate_of(model, n) for model in models] for n in self.rate_keys}
        for n in self.rate_keys:  # the float attribute becomes a 0-d buffer functional_call can swap per cell
            m = self.template.get_submodule(n)
            del m.p
            m.register_buffer("p", torch.zeros((), device=device))
        self.params, self.buffers = stack_module_state(models)  # (M, *shape); params are fresh leaves
        self.buffers.update({k: torch.tensor(v, device=device) for k, v in rates.items()})
        names = penalties.weight_names(self.template)
        self.decay = {k: k in names for k in self.params}  # the cell's weights (decayed, L1, max-norm)
        self.weights = [k for k, d in self.decay.items() if d]
        self.optimizer = StackedOptimizer(self.params, self.decay, [c.optim for c in cfgs], device)
        # the lone run's per-step schedule, the same for every cell (no torch optimizer: building one
        # imports torch._dynamo, ~1.7 s of start-up)
        self.factor = lr_factor(cfgs[0].optim, cfgs[0].trainer.epochs, steps_per_epoch)
        self.steps = 0

        def per_cell(get) -> Tensor:
            return torch.tensor([float(get(c)) for c in cfgs], device=device)

        self.smoothing = per_cell(lambda c: c.reg.label_smoothing)  # (M,)
        self.l1 = per_cell(lambda c: c.reg.l1)  # (M,)
        self.max_norm = per_cell(lambda c: math.inf if c.reg.max_norm is None else c.reg.max_norm)  # (M,)
        self.scheduled = [m for m in self.template.modules() if hasattr(m, "set_progress")]

        def call(params, buffers, x):  # one cell: x (B, ...) -> logits (B, K)
            return functional_call(self.template, (params, buffers), (x,))

        # "error": a draw from torch's global generator (a plugin's module) would be split over the cells;
        # it fails the trial step (probe) instead, and those cells train alone (engine/loop.py)
        self._train = vmap(call, randomness="error")  # x: (M, B, ...), one batch per cell

    def train(self) -> None:
        self.template.train()

    def forward(self, xb: Tensor) -> Tensor:  # (M, B, ...) -> (M, B, K)
        with streams.drawing(self.noise):
            return self._train(self.params, self.buffers, xb)

    def probe(self, xb: Tensor, yb: Tensor) -> str | None:
        """One training-mode forward and backward of every cell on a small batch (M, b, ...), leaving
        no trace (random streams, BatchNorm statistics, gradients): None if the stack runs, else the
        error. A module that cannot run under vmap (e.g. a plugin's dropout that branches in Python on
        its rate, which is a per-cell tensor here, or draws from torch's global generator) fails here,
        before any cell has started, and its cells train alone instead."""
        saved = {k: v.clone() for k, v in self.buffers.items()}
        states = [g.get_state() for g in self.noise]
        try:
            self.train()
            self.losses(self.forward(xb), yb).sum().backward()
        except torch.OutOfMemoryError:
            raise  # the stack is too large, not unstackable: the launcher says how to make it smaller
        except Exception as exc:  # noqa: BLE001 - any other failure means: not as a stack
            return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        finally:
            with torch.no_grad():
                for k, v in saved.items():
                    self.buffers[k].copy_(v)
            for g, state in zip(self.noise, states, strict=True):
                g.set_state(state)
            self.zero_grad()
        return None

    def losses(self, logits: Tensor, yb: Tensor) -> Tensor:
        """(M, B, K) logits, (M, B) labels or (M, B, K) soft targets -> (M,) mean loss per cell, with
        each cell's label smoothing eps: (1 - eps) * CE(target) + eps * CE(uniform), torch's formula."""
        logp = logits.float().log_softmax(-1)
        ce = -(yb * logp).sum(-1) if yb.dim() == 3 else -logp.gather(-1, yb[..., None]).squeeze(-1)  # (M, B)
        eps = self.smoothing[:, None]
        return ((1 - eps) * ce - eps * logp.mean(-1)).mean(1)

    def objective(self, losses: Tensor) -> Tensor:
        """Sum over cells: each cell's gradient is its own loss's gradient."""
        total = losses.sum()
        if bool((self.l1 > 0).any()):
            total = total + (self.l1 * self._per_cell(lambda w: w.abs().flatten(1).sum(1))).sum()
        return total

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.optimizer.step(self.params, self.factor(self.steps))
        self.steps += 1
        if bool(torch.isfinite(self.max_norm).any()):  # penalties.apply_max_norm_ with a per-cell c
            for k in self.weights:
                w = self.params[k]
                flat = w.view(w.shape[0], w.shape[1], -1)  # (M, units, fan_in)
                norms = flat.norm(dim=2, keepdim=True)
                flat.mul_(torch.clamp(self.max_norm[:, None, None] / (norms + NORM_EPS), max=1.0))

    def lrs(self) -> list[float]:
        return self.optimizer.lr(self.factor(self.steps)).tolist()

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor, normalize, autocast, mode: str) -> Tensor:
        """[mean loss, accuracy] per cell on a shared (x, y) -> (M, 2) device tensor (eval mode only:
        eval.mode=train runs as a stack of one, see engine/plan.py).

        One cell after another through the template with that cell's weights, not vmap: without a
        graph to keep, large batches already fill the machine, and vmap's max-pooling rule takes
        a kernel ~10x slower than torch's own (16 mnist1d CNN cells on 800 examples, 2 CPU threads:
        425 ms through vmap, 42 ms cell by cell; 32 MLP cells 15 ms vs 11 ms)."""
        self.template.eval()
        try:
            return torch.stack([score(self._cell(m), x, y, normalize, autocast) for m in range(self.M)])
        finally:
            self.template.train()

    def _cell(self, m: int):
        """Cell m as a batch -> logits function (the template run on its slices of the stack)."""
        state = {k: v[m] for k, v in self.params.items()} | {k: v[m] for k, v in self.buffers.items()}
        return lambda xb: functional_call(self.template, state, (xb,))

    def zero_fraction(self) -> Tensor:  # -> (M,)
        near = self._per_cell(lambda w: (w.detach().abs() < penalties.ZERO_TOL).flatten(1).sum(1))
        return near.double() / sum(self.params[k][0].numel() for k in self.weights)

    def _per_cell(self, fn) -> Tensor:
        return sum(fn(self.params[k]) for k in self.weights)

    def cell_state(self, m: int) -> dict[str, Tensor]:
        """Cell m's state_dict (the keys of its own model; the rate buffers are the template's)."""
        rates = {f"{n}.p" for n in self.rate_keys}
        state = {k: v[m].detach().clone() for k, v in {**self.params, **self.buffers}.items() if k not in rates}
        return state

    def load_cell(self, m: int, model: nn.Module) -> None:
        model.load_state_dict(self.cell_state(m))

    def select(self, keep: list[int]) -> None:
        """Keep the cells at positions `keep`; the others have finished."""
        idx = torch.tensor(keep, device=self.smoothing.device)
        self.M = len(keep)
        self.params = {k: v.detach()[idx].requires_grad_() for k, v in self.params.items()}
        self.buffers = {k: v[idx] for k, v in self.buffers.items()}
        self.optimizer.select(idx)
        self.noise = [self.noise[m] for m in keep]
        self.smoothing, self.l1, self.max_norm = self.smoothing[idx], self.l1[idx], self.max_norm[idx]


def _holds_rate(m: nn.Module) -> bool:
    return is_stochastic(m) and isinstance(getattr(m, "p", None), float)


def _rate_of(model: nn.Module, name: str) -> float:
    """The cell's rate at that slot (0 where its slot is nn.Identity: rate 0 builds no module)."""
    m = model.get_submodule(name)
    return float(m.p) if _holds_rate(m) else 0.0


def _template(models: list[nn.Module]) -> nn.Module:
    """A copy of the first cell's model with every dropout slot filled from a cell that has one
    there (the cells agree on `signature`, so slots are the only place they may differ)."""
    template = copy.deepcopy(models[0])
    for name, m in list(template.named_modules()):
        if not isinstance(m, nn.Identity) or not name:
            continue
        for other in models[1:]:
            o = other.get_submodule(name)
            if not isinstance(o, nn.Identity):
                parent, _, leaf = name.rpartition(".")
                setattr(template.get_submodule(parent) if parent else template, leaf, copy.deepcopy(o))
                break
    return template


def bytes_per_cell(model: nn.Module, input_shape: tuple, batch_size: int, optimizer: str) -> int:
    """Rough memory of one cell in a stack: weights, gradients and optimizer state, plus every
    module's output for a training batch, kept for backward (activations_per_example)."""
    n_params = sum(p.numel() for p in model.parameters())
    states = 2 if optimizer in ("adam", "adamw") else 1
    activations = activations_per_example(model, input_shape)
    return 4 * (n_params * (2 + states) + 2 * batch_size * activations)  # float32; x2: outputs and their grads


def activations_per_example(model: nn.Module, input_shape) -> int:
    """Float values one example's forward pass produces, summed over the model's leaf layers (an upper bound on
    what a pass holds at once), measured with hooks on the model's own device (meta: nothing allocated) in eval
    mode, every module's mode given back after; 0 where a layer cannot run there."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(output, Tensor):
            total += output[0].numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    try:
        with torch.no_grad(), restore_modes(model):
            model.eval()(torch.zeros((1, *input_shape), device=next(model.parameters()).device))
    except Exception:  # noqa: BLE001 - an estimate: a layer that cannot run there leaves the check to the run
        return 0
    finally:
        for hook in hooks:
            hook.remove()
    return total
