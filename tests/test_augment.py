"""Batched augmentation (regbench/data/augment_ops.py) and mixing (regbench/regularizers/mixing.py).

Generic checks are parametrised over AUGMENTS.names(), so a newly registered op is covered
without new test code: shapes/dtypes, refusal on the wrong data kind, per-sample randomness,
determinism. Op-specific tests compare against a per-sample reference (a Python loop over
samples is fine here: it is the reference, not the implementation).

Augmentation is off in evaluation by construction: build_augment returns a plain function
(no module, no train/eval mode) and train.py calls it only on training batches, never in
evaluate.loss_and_correct.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import read_summary, run_dirs
from omegaconf import OmegaConf

from regbench.core.errors import ConfigError
from regbench.data.augment import AUGMENTS, KINDS, build_augment
from regbench.data.augment_ops import check_params
from regbench.rules.config import AugmentConfig

SHAPES = {  # case -> (kind, input shape without the batch dim)
    "gray8": ("image", (1, 8, 8)),
    "rgb32": ("image", (3, 32, 32)),
    "seq40": ("sequence", (1, 40)),
}
K = 10
OPS = AUGMENTS.names()
SUPPORTED = [pytest.param(op, case, id=f"{op}-{case}") for op in OPS for case, (kind, _) in SHAPES.items()
             if kind in KINDS[op]]
REFUSED = [pytest.param(op, kind, id=f"{op}-{kind}") for op in OPS for kind in ("image", "sequence")
           if kind not in KINDS[op]]
MIXING = {"mixup", "cutmix"}
CONF = Path(__file__).resolve().parents[1] / "regbench" / "conf" / "augment"


def acfg(ops=(), **params):
    """The `augment` config node as the CLI hands it over (a structured DictConfig)."""
    return OmegaConf.structured(AugmentConfig(ops=list(ops), **params))


def apply(op: str, x, y, kind: str, num_classes: int = K, **params):
    fn = build_augment(acfg([op], **params), kind, num_classes)
    return fn(x, y)


def batch(case: str, n: int = 16, seed: int = 0):
    """(x, y): distinct random normalised-looking inputs (no exact zeros), labels 0..K-1."""
    kind, shape = SHAPES[case]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n,) + shape, generator=gen) + 5.0  # offset: a zero in the output means "cut"
    y = torch.arange(n) % K
    return kind, x, y


def assert_valid_targets(t: torch.Tensor, n: int, k: int) -> None:
    assert t.shape == (n, k) and t.dtype == torch.float32
    assert (t >= 0).all()
    torch.testing.assert_close(t.sum(1), torch.ones(n))


# ---------------------------------------------------------------------------- generic, over the registry


@pytest.mark.parametrize("op,case", SUPPORTED)
def test_shape_dtype_and_targets_preserved(op, case):
    kind, x, y = batch(case)
    torch.manual_seed(0)
    out, t = apply(op, x.clone(), y.clone(), kind)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.isfinite(out).all()
    if op in MIXING:
        assert_valid_targets(t, len(x), K)
    else:
        assert torch.equal(t, y)  # non-mixing ops never touch the labels


@pytest.mark.parametrize("op,case", SUPPORTED)
def test_soft_targets_pass_through_or_stay_valid(op, case):
    """A recipe may mix first; every op must accept (B, K) soft targets after that."""
    kind, x, y = batch(case)
    soft = F.one_hot(y, K).float() * 0.7 + 0.03
    torch.manual_seed(0)
    _, t = apply(op, x, soft.clone(), kind)
    if op in MIXING:
        assert_valid_targets(t, len(x), K)
    else:
        assert torch.equal(t, soft)


@pytest.mark.parametrize("op,kind", REFUSED)
def test_op_refused_on_other_kind(op, kind):
    with pytest.raises(ConfigError) as exc:
        build_augment(acfg([op]), kind, K)
    msg = str(exc.value)
    assert "\n" not in msg and repr(op) in msg and "valid choices" in msg
    valid = [n for n in OPS if kind in KINDS[n]]
    assert all(n in msg for n in valid)


@pytest.mark.parametrize("op,case", SUPPORTED)
def test_randomness_differs_per_sample(op, case):
    """A batch of IDENTICAL inputs must not come out identical (one draw per batch would)."""
    kind, x, _ = batch(case, n=32)
    x = x[:1].expand_as(x).contiguous()  # 32 copies of one input
    y = torch.arange(len(x)) % K
    torch.manual_seed(0)
    out, t = apply(op, x, y, kind)
    if op in MIXING:  # mixing identical inputs gives identical inputs: the labels' weights show the draws
        own = t[torch.arange(len(y)), y]  # (B,) weight left on each example's own label
        assert own.unique().numel() > 1
    else:
        assert out.flatten(1).unique(dim=0).shape[0] > 1


@pytest.mark.parametrize("op,case", SUPPORTED)
def test_seeded_determinism(op, case):
    kind, x, y = batch(case)
    runs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        runs.append(apply(op, x, y, kind))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert not torch.equal(runs[0][0], runs[2][0]) or not torch.equal(runs[0][1], runs[2][1])


ZERO_STRENGTH = {  # op -> parameters at which it must be the exact identity ("off means absent")
    "crop": {"crop_pad": 0},
    "rotate": {"rotate_degrees": 0.0},
    "color_jitter": {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0},
    "cutout": {"cutout_size": 0},
    "noise": {"noise_std": 0.0},
    "scale": {"scale": 0.0},
    "mixup": {"mixup_alpha": 0.0},
    "cutmix": {"cutmix_alpha": 0.0},
}


@pytest.mark.parametrize("op,case", [p for p in SUPPORTED if p.values[0] in ZERO_STRENGTH])
def test_zero_strength_is_identity(op, case):
    kind, x, y = batch(case)
    out, t = apply(op, x, y, kind, **ZERO_STRENGTH[op])
    assert torch.equal(out, x) and torch.equal(t, y)


def test_every_op_has_a_strength_zero_case_or_none():
    assert set(OPS) - set(ZERO_STRENGTH) <= {"flip"}  # flip has no strength: it is on or absent


# ---------------------------------------------------------------------------- build_augment and recipes


def test_no_ops_means_no_augment_and_ops_are_plain_functions():
    assert build_augment(acfg([]), "image", K) is None
    fn = build_augment(acfg(["flip", "cutout"]), "image", K)
    # A plain callable, not an nn.Module: nothing has a train/eval mode to forget. train.py calls it
    # only on training batches (evaluate.loss_and_correct never sees it), so eval is always clean.
    assert callable(fn) and not isinstance(fn, torch.nn.Module)


def test_unknown_op_lists_valid_choices():
    with pytest.raises(ConfigError, match="valid choices: .*flip"):
        build_augment(acfg(["nope"]), "image", K)


def test_every_op_has_a_single_op_recipe():
    for op in OPS:
        spec = OmegaConf.load(CONF / f"{op}.yaml")
        assert spec.name == op and list(spec.ops) == [op]
        assert (CONF / f"{op}.yaml").read_text().startswith("# ")  # one-line header comment


@pytest.mark.parametrize("recipe", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_recipes_compose_and_name_registered_ops(make_cfg, recipe):
    cfg = make_cfg(f"augment={recipe}")
    assert cfg.augment.name == recipe
    assert all(op in AUGMENTS for op in cfg.augment.ops)
    kinds = {"image", "sequence"}.intersection(*[KINDS[op] for op in cfg.augment.ops])
    assert kinds, f"{recipe} applies to no data kind"


def test_ops_list_override(make_cfg):
    cfg = make_cfg("augment.ops=[flip,cutout]")
    assert list(cfg.augment.ops) == ["flip", "cutout"]
    assert callable(build_augment(cfg.augment, "image", K))


def test_check_params_rejects_out_of_range():
    check_params(acfg())
    for key, bad in [("crop_pad", -1), ("cutout_size", -2), ("noise_std", -0.1), ("scale", 1.5),
                     ("mixup_alpha", -1.0), ("brightness", -0.1)]:
        with pytest.raises(ConfigError, match=f"augment.{key}"):
            check_params(acfg(**{key: bad}))


# ---------------------------------------------------------------------------- op semantics


def test_flip_each_sample_flipped_or_not_about_half():
    _, x, y = batch("rgb32", n=1000)
    torch.manual_seed(0)
    out, _ = apply("flip", x, y, "image")
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert (same ^ flipped).all()  # exactly one of the two for each sample (inputs are not symmetric)
    assert 0.45 < flipped.float().mean().item() < 0.55  # 1000 fair coins: std 0.016


def _shifted(x: torch.Tensor, k: int, d: tuple[int, ...]) -> torch.Tensor:
    """Reference: x (C, *spatial) translated by d (|d| <= k per dim), zero-filled, by slicing."""
    xp = F.pad(x, (k, k) * (x.dim() - 1))
    slices = [slice(None)] + [slice(k - di, k - di + n) for di, n in zip(d, x.shape[1:], strict=True)]
    return xp[tuple(slices)]


@pytest.mark.parametrize("case", ["gray8", "rgb32", "seq40"])
def test_crop_is_a_random_translation_within_pad(case):
    kind, x, y = batch(case, n=200)
    k = 2
    torch.manual_seed(0)
    out, _ = apply("crop", x, y, kind, crop_pad=k)
    dims = x.dim() - 2
    shifts = [tuple(d) for d in torch.cartesian_prod(*[torch.arange(-k, k + 1)] * dims).view(-1, dims).tolist()]
    seen = set()
    for i in range(len(x)):
        match = [d for d in shifts if torch.equal(out[i], _shifted(x[i], k, d))]
        assert match, f"sample {i} is not a translation of its input by at most {k}"
        seen.add(match[0])
    assert len(seen) == len(shifts)  # every offset occurs: they are drawn per sample, uniformly


def test_crop_pad_zero_is_identity_and_a_pad_beyond_the_size_is_allowed():
    kind, x, y = batch("gray8")
    assert torch.equal(apply("crop", x, y, kind, crop_pad=0)[0], x)
    torch.manual_seed(0)
    out, _ = apply("crop", x, y, kind, crop_pad=9)  # zero padding: any pad works (some inputs leave the frame)
    assert out.shape == x.shape and (out == 0).any()


@pytest.mark.parametrize("case", ["gray8", "rgb32", "seq40"])
def test_cutout_zeroes_one_clipped_box_per_sample(case):
    kind, x, y = batch(case, n=200)
    size = 4 if kind == "image" else 7
    torch.manual_seed(0)
    out, _ = apply("cutout", x, y, kind, cutout_size=size)
    zero = out == 0  # inputs have no exact zeros
    assert (zero == zero[:, :1]).all()  # the same box in every channel
    zero = zero[:, 0]  # (B, *spatial)
    assert torch.equal(out[~zero.unsqueeze(1).expand_as(out)], x[~zero.unsqueeze(1).expand_as(x)])
    clipped = 0
    for z in zero:
        box = torch.ones_like(z)
        for d in range(z.dim()):
            covered = z.any(dim=[e for e in range(z.dim()) if e != d]) if z.dim() > 1 else z  # (L_d,)
            idx = covered.nonzero().flatten()
            assert len(idx) and idx[-1] - idx[0] + 1 == len(idx)  # one contiguous run
            at_border = idx[0] == 0 or idx[-1] == len(covered) - 1
            assert len(idx) == size or (len(idx) < size and at_border)
            clipped += int(len(idx) < size)
            shape = [1] * z.dim()
            shape[d] = -1
            box = box & covered.view(shape)
        assert torch.equal(z, box)  # exactly a (clipped) axis-aligned box
    assert clipped > 0  # centres are uniform over the input, so some boxes are clipped


def test_noise_has_the_configured_std():
    x = torch.zeros(256, 3, 32, 32)
    torch.manual_seed(0)
    out, _ = apply("noise", x, torch.zeros(256, dtype=torch.long), "image", noise_std=0.25)
    assert abs(out.std().item() - 0.25) < 0.0025 and abs(out.mean().item()) < 0.0025


def test_scale_is_one_factor_per_signal_within_range():
    kind, x, y = batch("seq40", n=100)
    torch.manual_seed(0)
    out, _ = apply("scale", x, y, kind, scale=0.2)
    ratio = (out / x).flatten(1)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    assert (ratio >= 0.8 - 1e-6).all() and (ratio <= 1.2 + 1e-6).all() and ratio[:, 0].std() > 0.05


def test_rotate_matches_torchvision_per_image_and_zero_degrees_is_identity():
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    kind, x, y = batch("rgb32", n=8)
    torch.manual_seed(0)
    angles = torch.empty(8).uniform_(-30, 30)  # the draws rotate() makes with this seed
    torch.manual_seed(0)
    out, _ = apply("rotate", x, y, kind, rotate_degrees=30.0)
    ref = torch.stack([TF.rotate(x[i], float(a), interpolation=InterpolationMode.BILINEAR)
                       for i, a in enumerate(angles)])  # one angle per call: the per-sample reference
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert torch.equal(apply("rotate", x, y, kind, rotate_degrees=0.0)[0], x)
    torch.testing.assert_close(apply("rotate", x, y, kind, rotate_degrees=1e-4)[0], x, atol=1e-3, rtol=0)


def test_color_jitter_formulas():
    kind, x, y = batch("rgb32", n=64)
    off = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0}
    out, _ = apply("color_jitter", x, y, kind, **{**off, "brightness": 0.4})
    f = (out / x).flatten(1)
    torch.testing.assert_close(f, f[:, :1].expand_as(f))  # brightness: one multiplicative factor per image
    assert (f > 0.6 - 1e-5).all() and (f < 1.4 + 1e-5).all() and f[:, 0].std() > 0.05

    out, _ = apply("color_jitter", x, y, kind, **{**off, "contrast": 0.4})
    m = x.mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(out.mean((1, 2, 3), keepdim=True), m)  # around the per-image mean
    d, d_out = (x - m).flatten(1), (out - m).flatten(1)
    f = (d * d_out).sum(1, keepdim=True) / d.square().sum(1, keepdim=True)  # (B, 1) least-squares factor
    torch.testing.assert_close(d_out, f * d, atol=1e-4, rtol=1e-4)  # one factor per image
    assert (f > 0.6 - 1e-5).all() and (f < 1.4 + 1e-5).all() and f.std() > 0.05

    out, _ = apply("color_jitter", x, y, kind, **{**off, "saturation": 0.4})
    g = 0.2989 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    g_out = 0.2989 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]
    torch.testing.assert_close(g_out, g, atol=2e-3, rtol=0)  # saturation keeps the grey level
    assert not torch.allclose(out, x)

    gray_kind, gx, gy = batch("gray8")  # 1-channel images: saturation alone does nothing
    assert torch.equal(apply("color_jitter", gx, gy, gray_kind, **{**off, "saturation": 0.4})[0], gx)


def _distinct_labels(case: str, n: int = 64):
    kind, x, _ = batch(case, n=n)
    return kind, x, torch.arange(n)  # K = n: each example its own class, so a target names its partner


@pytest.mark.parametrize("case", ["rgb32", "seq40"])
def test_mixup_mixes_inputs_and_targets_with_the_same_weight(case):
    kind, x, y = _distinct_labels(case)
    torch.manual_seed(0)
    out, t = apply("mixup", x, y, kind, num_classes=len(y), mixup_alpha=0.4)
    assert_valid_targets(t, len(y), len(y))
    for i in range(len(y)):
        lam = t[i, i]
        others = (t[i] > 0).nonzero().flatten().tolist()
        j = next((c for c in others if c != i), i)  # the partner (itself if paired with itself)
        torch.testing.assert_close(out[i], lam * x[i] + (1 - lam) * x[j], atol=1e-5, rtol=1e-5)
    assert t.diagonal().unique().numel() > len(y) // 2  # one lam per sample


@pytest.mark.parametrize("case", ["gray8", "rgb32", "seq40"])
def test_cutmix_target_weight_is_the_pasted_fraction(case):
    kind, x, y = _distinct_labels(case)
    torch.manual_seed(0)
    out, t = apply("cutmix", x, y, kind, num_classes=len(y), cutmix_alpha=1.0)
    assert_valid_targets(t, len(y), len(y))
    n_pixels = x[0, 0].numel()
    for i in range(len(y)):
        pasted = (out[i] != x[i]).any(0)  # (*spatial): positions taken from the partner
        others = [c for c in (t[i] > 0).nonzero().flatten().tolist() if c != i]
        if not others:  # paired with itself or an empty box: untouched
            assert torch.equal(out[i], x[i])
            continue
        (j,) = others
        assert torch.equal(out[i][:, pasted], x[j][:, pasted])  # pasted content is the partner's, same place
        assert torch.equal(out[i][:, ~pasted], x[i][:, ~pasted])
        torch.testing.assert_close(t[i, j], pasted.sum() / n_pixels)  # weight = actual area after clipping
        torch.testing.assert_close(t[i, i], 1 - pasted.sum() / n_pixels)


def test_two_mixing_ops_mix_soft_targets():
    kind, x, y = batch("rgb32", n=64)
    torch.manual_seed(0)
    fn = build_augment(acfg(["mixup", "cutmix"]), kind, K)
    out, t = fn(x, y)
    assert_valid_targets(t, len(y), K)
    assert ((t > 0).sum(1) > 2).any()  # some rows carry three or more classes: soft targets were mixed


def test_cross_entropy_accepts_mixed_targets_with_label_smoothing():
    kind, x, y = batch("rgb32")
    torch.manual_seed(0)
    _, t = apply("cutmix", x, y, kind)
    logits = torch.randn(len(y), K, requires_grad=True)
    loss = F.cross_entropy(logits, t, label_smoothing=0.1)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None


# ---------------------------------------------------------------------------- through the CLI


def test_cli_rejects_image_op_on_sequences_in_one_line(cli):
    code, _, err = cli("run", "augment=flip", "dataset=synthetic", "dataset.shape=[1,24]",
                       "dataset.num_samples=200", "trainer.progress=false")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "'flip'" in err and "valid choices" in err
    assert not Path("runs").exists()  # rejected before anything is written


def test_cli_trains_with_a_mixing_recipe(cli):
    code, _, err = cli("run", "augment.ops=[flip,crop,cutmix,mixup]", "dataset=synthetic", "dataset.shape=[1,8,8]",
                       "dataset.num_samples=200", "model=cnn", "model.channels=[4]", "model.hidden=[8]",
                       "trainer.epochs=1", "trainer.progress=false", "trainer.device=cpu")
    assert code == 0, err
    (run,) = run_dirs(Path("runs"))
    assert read_summary(run)["status"] == "completed"
