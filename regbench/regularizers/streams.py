"""Per-cell random streams: every random draw of a cell comes from generators that belong to it.

A cell is a function of its config and seed: the same numbers whether it trains alone, in a
stack of any size, under any launcher or after a resume. torch's global generator cannot give
that to a stack: under `vmap(randomness="different")` one global draw is split over the cells,
so a cell's masks would depend on its stack-mates. So each cell owns generators, seeded from its
seed alone (`Streams`), and every draw names the one it takes from:

- forward-pass noise (dropout masks, DropConnect weights, DropBlock centres, Gaussian noise,
  drop path, attention dropout): modules call `rand_like` / `randn_like` below, which draw from
  the running cell's `noise` generator. Inside a stacked forward (vmap) the draw is batched by
  hand: cell m draws its slice from generators[m], exactly the numbers it would draw alone.
- augmentation and mixing: the ops take `ctx.generator`, the cell's `augment` generator
  (regbench/data/augment_base.py AugmentContext).
- data order: the cell's `order` generator (CPU: the permutation is drawn on the host).
- initialisation: torch's global generator seeded with the cell's seed just before its model is
  built (what any PyTorch script does), the same alone or in a stack.
- evaluations that draw (MC dropout, eval.mode=train): the cell's `evaluation` generator, so they
  neither depend on training's draws nor move them.

Streams are derived from the seed only, not from the rest of the config: two cells of a paired
comparison (same seed, different dropout rate) share their initial weights, data order and the
uniform numbers behind their masks (common random numbers), which lowers the variance of their
difference without biasing it.

A module that draws from torch's global generator (torch.rand_like, nn.Dropout, torchvision's
StochasticDepth) cannot give each cell of a stack its own numbers: the stacked forward runs with
`randomness="error"`, so such a module fails the stack's trial step and its cells train alone,
with a log line saying so (engine/loop.py), each with the global generator seeded from its seed
(purpose "global") when it starts training.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, fields

import torch
from torch import Tensor

_active: list[torch.Generator] = []  # the running stack's noise generators, one per cell (set by `drawing`)


def derive(seed: int, purpose: str) -> int:
    """A 63-bit seed for one purpose of one cell: a hash, so streams of nearby seeds are unrelated."""
    digest = hashlib.blake2b(f"regbench:{int(seed)}:{purpose}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(seed: int, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive(seed, purpose))


@dataclass
class Streams:
    """A cell's generators: `order` (CPU) for its data order; `noise`, `augment` and `evaluation` on its device."""

    order: torch.Generator
    noise: torch.Generator
    augment: torch.Generator
    evaluation: torch.Generator

    @classmethod
    def of(cls, seed: int, device: torch.device | str = "cpu") -> Streams:
        # order keeps torch.Generator().manual_seed(seed): the data order of runs made before streams existed
        return cls(torch.Generator().manual_seed(int(seed)),
                   *(generator(seed, purpose, device) for purpose in ("noise", "augment", "evaluation")))

    def state(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name).get_state() for f in fields(self)}

    def load_state(self, state: dict[str, Tensor]) -> None:
        for name, value in state.items():
            getattr(self, name).set_state(value)


@contextmanager
def drawing(generators: list[torch.Generator | None]):
    """Forward passes inside draw their noise from these: [the cell's] alone, one per cell in a stack.
    [None]: no cell's (torch's global generator, e.g. an evaluation of a model outside a run)."""
    global _active
    saved, _active = _active, [g for g in generators if g is not None]
    try:
        yield
    finally:
        _active = saved


@contextmanager
def as_global(gen: torch.Generator | None):
    """Inside, torch's global generator of gen's device continues gen's stream, and gen goes on from
    where it left off: for library code that takes no generator argument (torch.distributions).
    The global generator is given back its own state after. gen=None: the global stream as it is."""
    if gen is None:
        yield
        return
    cuda = gen.device.type == "cuda"
    with torch.random.fork_rng(devices=[gen.device] if cuda else [], device_type=gen.device.type):
        if cuda:
            torch.cuda.set_rng_state(gen.get_state(), gen.device)
        else:
            torch.set_rng_state(gen.get_state())
        yield
        gen.set_state(torch.cuda.get_rng_state(gen.device) if cuda else torch.get_rng_state())


def rand_like(like: Tensor, p: float | Tensor | None = None) -> Tensor:
    """Uniform [0, 1) numbers shaped and typed like `like`, from the running cell's noise stream
    (torch's global generator when no cell is running, e.g. a model used outside regbench).

    p: the rate the draw serves. A cell whose rate is 0 gets zeros and draws nothing, as alone it
    draws nothing where its slot is nn.Identity: in a stack its stream stays where its lone run has
    it, whatever rates its stack-mates have there. (Every formula is the identity at rate 0 with
    any numbers, zeros included.) A float rate is left out: a lone module at rate 0 skips its draw."""
    return _Draw.apply(like.detach(), False, _rate(p)) if _active else torch.rand_like(like)


def randn_like(like: Tensor, p: float | Tensor | None = None) -> Tensor:
    """Standard normal numbers shaped and typed like `like`, from the running cell's noise stream (p: as rand_like)."""
    return _Draw.apply(like.detach(), True, _rate(p)) if _active else torch.randn_like(like)


def _rate(p: float | Tensor | None) -> Tensor | None:
    return p.detach() if isinstance(p, Tensor) else None


def _draw(shape, like: Tensor, normal: bool, gen: torch.Generator, skip: bool = False) -> Tensor:
    if skip:
        return torch.zeros(shape, dtype=like.dtype, device=like.device)
    fn = torch.randn if normal else torch.rand
    return fn(shape, generator=gen, dtype=like.dtype, device=like.device)


class _Draw(torch.autograd.Function):
    """A draw that vmap batches cell by cell: torch.func calls `vmap` below with the stacked `like`
    (its cell dim at in_dims[0]), and cell m takes its slice from _active[m] (none where its rate,
    in_dims[2], is 0). Outside vmap (a lone cell, or one cell of a stack evaluated on its own)
    `forward` draws from _active[0]. Hand-written because torch has no per-sample generator:
    vmap's own randomness rules split one global stream over the cells."""

    @staticmethod
    def forward(like: Tensor, normal: bool, p: Tensor | None) -> Tensor:
        if len(_active) != 1:  # in a stack, but `like` holds no cell dim: one draw would be shared by every cell
            raise RuntimeError("a draw inside a stack must be shaped like a tensor of the cell (its input, "
                               "activations or weights), not like a constant")
        return _draw(like.shape, like, normal, _active[0], skip=p is not None and not bool(p != 0))

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.mark_non_differentiable(output)

    @staticmethod
    def backward(ctx, grad):  # noise is a constant of the step
        return None, None, None

    @staticmethod
    def vmap(info, in_dims, like: Tensor, normal: bool, p: Tensor | None):
        if len(_active) != info.batch_size:
            raise RuntimeError(f"a stack of {info.batch_size} cells draws with {len(_active)} streams")
        dim, p_dim = in_dims[0], in_dims[2]
        shape = like.shape if dim is None else like.shape[:dim] + like.shape[dim + 1:]
        if p is None:
            skips = [False] * info.batch_size
        else:  # the cells' rates, read on the host (one small copy per draw: which streams move)
            zero = (p == 0) if p_dim is None else (p == 0).movedim(p_dim, 0).reshape(info.batch_size, -1).all(1)
            skips = zero.tolist() if zero.ndim else [bool(zero)] * info.batch_size
        return torch.stack([_draw(shape, like, normal, g, skip) for g, skip in zip(_active, skips, strict=True)]), 0
