"""Mixing regularizers: mixup and cutmix, as batched augmentation ops (registered in AUGMENTS).

Both pair each example i with example perm[i] of the same batch (one `randperm` per call)
and return (B, K) soft targets, which `F.cross_entropy` accepts as class probabilities
(label smoothing then applies on top). Integer labels become one-hot rows first; targets
that are already soft (a second mixing op in the same recipe) are mixed as they are.

mixup  (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018):
    x_i <- lam_i x_i + (1 - lam_i) x_perm[i],  t_i <- lam_i t_i + (1 - lam_i) t_perm[i],
    lam_i ~ Beta(mixup_alpha, mixup_alpha).
cutmix (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
    Localizable Features", ICCV 2019): paste a box of x_perm[i] into x_i. The box has side
    L * sqrt(1 - lam_i) along each image axis (L * (1 - lam_i) for a 1-D segment), a uniform
    centre, and is clipped at the border; t_i is mixed by the ACTUAL pasted fraction r_i
    (after clipping and rounding): t_i <- (1 - r_i) t_i + r_i t_perm[i].

One lam per SAMPLE, not the papers' one lam (and one box) per batch: each example's mix
is drawn independently (per-sample randomness, as for every augmentation; timm's "elem" mode). The
marginal distribution of lam per example is the same; it costs nothing batched.
alpha = 0 switches an op off (inputs and integer labels pass through untouched).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from regbench.data.augment_base import AugmentContext, register
from regbench.data.augment_ops import box_mask, per_sample
from regbench.regularizers import streams


def soft_targets(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """(B,) class indices -> (B, K) one-hot rows; (B, K) soft targets pass through."""
    return F.one_hot(y, num_classes).to(dtype) if y.dim() == 1 else y


def sample_beta(alpha: float, n: int, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """(n,) draws of Beta(alpha, alpha) in x's dtype on x's device, from `generator` (the cell's augment
    stream, on x's device; torch.distributions takes no generator, so it draws from the global one
    while that continues the cell's stream: streams.as_global)."""
    if x.device.type not in ("cpu", "cuda"):  # no gamma sampler there (MPS): the global CPU generator's draw
        conc = torch.full((n,), float(alpha))
        return torch.distributions.Beta(conc, conc).sample().to(x.device, x.dtype)
    conc = torch.full((n,), float(alpha), device=x.device)
    with streams.as_global(generator):
        return torch.distributions.Beta(conc, conc).sample().to(x.dtype)


@register("mixup", params=("mixup_alpha",))
def mixup(x: torch.Tensor, y: torch.Tensor, ctx: AugmentContext) -> tuple:
    """Convex combination of each example (and its target) with a random partner; one lam per sample."""
    alpha = float(ctx.cfg.mixup_alpha)
    if alpha == 0:
        return x, y
    n = x.shape[0]
    lam = sample_beta(alpha, n, x, ctx.generator)  # (B,) weight of the example itself
    perm = torch.randperm(n, device=x.device, generator=ctx.generator)
    t = soft_targets(y, ctx.num_classes, x.dtype)  # (B, K)
    x = torch.lerp(x[perm], x, per_sample(lam, x))  # lam * x + (1 - lam) * x[perm]
    return x, torch.lerp(t[perm], t, lam[:, None])


@register("cutmix", params=("cutmix_alpha",))
def cutmix(x: torch.Tensor, y: torch.Tensor, ctx: AugmentContext) -> tuple:
    """Paste a random box (1-D: segment) of a random partner into each example; targets by pasted area."""
    alpha = float(ctx.cfg.cutmix_alpha)
    if alpha == 0:
        return x, y
    n, spatial = x.shape[0], tuple(x.shape[2:])
    lam = sample_beta(alpha, n, x, ctx.generator).float()  # (B,) target share of the example itself, before clipping
    side = (1.0 - lam).pow(1.0 / len(spatial))  # (B,) fraction of each side so the box area is 1 - lam
    sizes = (side[:, None] * torch.tensor(spatial, device=x.device)).long()  # (B, dims) box sides
    mask = box_mask(n, spatial, sizes, x.device, ctx.generator)  # (B, *spatial) True = pasted from the partner
    perm = torch.randperm(n, device=x.device, generator=ctx.generator)
    x = torch.where(mask.unsqueeze(1), x[perm], x)
    pasted = mask.flatten(1).to(x.dtype).mean(1)  # (B,) actual pasted fraction after clipping
    t = soft_targets(y, ctx.num_classes, x.dtype)
    return x, torch.lerp(t, t[perm], pasted[:, None])  # (1 - r) t + r t[perm]
