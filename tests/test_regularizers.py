"""The dropout family (regbench/regularizers): one parametrised suite over every registered type.

Generic tests run for every name in DROPOUTS (a new type is covered without new test
code): identity (or its documented scale) in eval, strength 0 == dropout=none bit for
bit, fresh seeded masks, E[train output] == eval output, backward through the models,
config checks and the YAML group file. The tables below hold only what is specific to a
type (eval scale, how its drop rate is observed); a type missing from them is skipped
there. Statistical checks are seeded and use ~4-5 standard errors.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

import regbench
from regbench.core.errors import ConfigError
from regbench.models import ACTIVATIONS, build_model
from regbench.regularizers import DROPOUTS, Slot
from regbench.regularizers.dropblock import DropBlock, drop_block, fit_block_size
from regbench.regularizers.dropconnect import DropConnect
from regbench.rules.config import Config
from regbench.rules.validate import validate

NAMES = DROPOUTS.names()
P = 0.3  # the rate used where a test does not care
INPUT_SHAPES = {"mlp": (1, 8, 8), "cnn1d": (1, 40), "cnn2d": (1, 8, 8)}  # digits-like, mnist1d-like
UNIT_X = {0: (32, 12), 1: (8, 3, 20), 2: (8, 3, 10, 10)}  # inputs of the single-layer units below

# ---- per-type expectations (only what differs between types)
EVAL_SCALE = {"original": lambda p: 1.0 - p}  # eval output = scale * input; default 1 (identity)
DROP_STAT = {  # how the drop rate is observed; see test_observed_drop_rate
    "none": "nothing",
    "standard": "element",
    "original": "element",
    "spatial": "channel",
    "dropconnect": "weight",
    "gaussian": "noise",
    "alpha": "alpha",
    "dropblock": "block",
}
APPROX_MEAN = {"dropblock"}  # E[train] == eval only in aggregate: see test_dropblock_keeps_the_mean


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These are thousands of tiny ops: one thread is ~10x faster than two, far more on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spec(name):
    return DROPOUTS.get(name)


def dims_for(name) -> list[int]:
    """Spatial dims of the slots a type applies to: 0 = fully connected, 1 = (N,C,L), 2 = (N,C,H,W)."""
    return [1, 2] if not spec(name).acts_on("mlp") else [0, 1, 2]


def models_for(name) -> list[str]:
    return ["cnn1d", "cnn2d"] if not spec(name).acts_on("mlp") else ["mlp", "cnn1d", "cnn2d"]


UNIT_CASES = [(n, d) for n in NAMES for d in dims_for(n)]
MODEL_CASES = [(n, m) for n in NAMES for m in models_for(n)]


def cfg_for(name: str = "none", model: str = "mlp", dropout: dict | None = None, **model_overrides):
    """A whole run config (typed) with small models; model is mlp | cnn1d | cnn2d."""
    if model == "mlp":
        small = {"name": "mlp", "hidden": [16, 16]}
    else:
        small = {"name": "cnn", "channels": [4, 8], "hidden": [16]}
    overrides = {"model": {**small, **model_overrides}, "dropout": {"name": name, **(dropout or {})}}
    return OmegaConf.merge(OmegaConf.structured(Config), overrides)


def unit(name: str, dims: int, p: float = P, **dropout):
    """(plain layer, layer as the type wraps it -> the type's slot module): one block of a model."""
    cfg = cfg_for(name, "mlp" if dims == 0 else f"cnn{dims}d", dict(p=p, p_conv=p, **dropout))
    layer = nn.Linear(12, 16) if dims == 0 else {1: nn.Conv1d, 2: nn.Conv2d}[dims](3, 6, 3, padding=1)
    slot = Slot("hidden" if dims == 0 else "conv", dims)
    return layer, nn.Sequential(spec(name).wrap_layer(layer, p, cfg), spec(name).slot_module(slot, p, cfg))


def has_noise(layer: nn.Module, u: nn.Module) -> bool:
    return any(not isinstance(m, (nn.Identity, nn.Sequential)) and m is not layer for m in u.modules())


def draws(module: nn.Module, x: torch.Tensor, k: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([module(x) for _ in range(k)])


# ---------------------------------------------------------------------------- generic, every type


@pytest.mark.parametrize("name,dims", UNIT_CASES)
def test_eval_mode_is_deterministic_identity_or_documented_scale(name, dims):
    """Eval: slot module output == scale * input (scale 1 except `original`: 1-p); a wrapped
    layer (dropconnect) == the plain layer; and no RNG draw at all."""
    torch.manual_seed(0)
    layer, u = unit(name, dims)
    x = torch.randn(UNIT_X[dims])
    u.eval()
    rng = torch.get_rng_state()
    with torch.no_grad():
        out, plain = u(x), layer(x)
    assert torch.equal(torch.get_rng_state(), rng)
    scale = EVAL_SCALE.get(name, lambda p: 1.0)(P)
    assert torch.equal(out, plain if scale == 1.0 else plain * scale)


@pytest.mark.parametrize("extra", [{}, {"schedule": "linear", "mask": "sample", "block_size": 5}])
@pytest.mark.parametrize("name", NAMES)
def test_zero_rate_gives_identity_or_the_plain_layer(name, extra):
    cfg = cfg_for(name, "cnn2d", dict(p=0.0, p_input=0.0, p_conv=0.0, **extra))
    slots = [Slot("input", d) for d in dims_for(name)] + [Slot("conv", d) for d in (1, 2)] + [Slot("hidden", 0)]
    for slot in slots:
        assert type(spec(name).slot_module(slot, 0.0, cfg)) is nn.Identity, slot
    for layer in (nn.Linear(4, 5), nn.Conv1d(2, 3, 3), nn.Conv2d(2, 3, 3)):
        assert spec(name).wrap_layer(layer, 0.0, cfg) is layer


@pytest.mark.parametrize("placement", ["after_activation", "before_norm"])
@pytest.mark.parametrize("name,model", MODEL_CASES)
def test_zero_rate_model_is_bit_identical_to_dropout_none(name, model, placement):
    """Strength 0 == dropout=none: same modules, same init, same train-mode output, same
    BatchNorm running stats, and the RNG left in the same state (no extra draws).
    The baseline uses the activation the type assumes (alpha -> selu), set explicitly."""
    zeros = dict(p=0.0, p_input=0.0, p_conv=0.0, placement=placement)
    cfg = cfg_for(name, model, zeros, batchnorm=True)
    base = cfg_for("none", model, dict(placement=placement), batchnorm=True, activation=spec(name).activation)
    results = []
    for c in (cfg, base):
        torch.manual_seed(0)
        net = build_model(c, INPUT_SHAPES[model], 10).train()
        x = torch.randn(6, *INPUT_SHAPES[model], generator=torch.Generator().manual_seed(1))
        out = net(x)
        results.append((str(net), out, net.state_dict(), torch.get_rng_state()))
    (r1, o1, s1, g1), (r2, o2, s2, g2) = results
    assert r1 == r2
    assert torch.equal(o1, o2)
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert torch.equal(g1, g2)


@pytest.mark.parametrize("name,dims", UNIT_CASES)
def test_fresh_mask_each_forward_and_reproducible_under_a_seed(name, dims):
    torch.manual_seed(0)
    layer, u = unit(name, dims)
    x = torch.randn(UNIT_X[dims])
    u.train()
    torch.manual_seed(1)
    a, b = u(x), u(x)
    torch.manual_seed(1)
    assert torch.equal(u(x), a)
    assert torch.equal(a, b) != has_noise(layer, u)  # `none` is deterministic, every other type is not


# Alpha dropout preserves moments instead (test_alpha_keeps_mean_0_variance_1); DropBlock only
# in aggregate (test_dropblock_keeps_the_mean): both are covered by their own tests.
EXPECTATION_CASES = [(n, d) for n, d in UNIT_CASES if spec(n).activation != "selu" and n not in APPROX_MEAN]


@pytest.mark.parametrize("name,dims", EXPECTATION_CASES)
def test_train_mode_expectation_equals_eval_output(name, dims):
    """Mean over 400 training draws == eval output, per element within 5 SE. Covers inverted
    types (x), `original` (E[x*mask] = (1-p)x = its eval output) and dropconnect at a layer
    (E[(W*M/(1-p)) x] = W x: the mean weight). Alpha dropout preserves moments instead."""
    torch.manual_seed(0)
    layer, u = unit(name, dims)
    x = torch.randn(UNIT_X[dims])
    with torch.no_grad():
        expected = u.eval()(x)
    samples = draws(u.train(), x, 400)
    mean, se = samples.mean(0), samples.std(0) / math.sqrt(len(samples))
    assert ((mean - expected).abs() <= 5 * se + 1e-5).all()


@pytest.mark.parametrize("placement", ["after_activation", "before_norm"])
@pytest.mark.parametrize("name,model", MODEL_CASES)
def test_gradients_flow_in_train_mode(name, model, placement):
    dropout = dict(p=P, p_input=0.2, p_conv=0.2, placement=placement)
    torch.manual_seed(0)
    net = build_model(cfg_for(name, model, dropout, batchnorm=True), INPUT_SHAPES[model], 10).train()
    x = torch.randn(8, *INPUT_SHAPES[model])
    F.cross_entropy(net(x), torch.arange(8) % 10).backward()
    for pname, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name,model", MODEL_CASES)
def test_every_module_a_type_adds_is_seen_as_stochastic_by_mc_dropout(name, model):
    """MC dropout (regbench/engine/uncertainty.py) switches only dropout-like modules to train mode:
    torch's _DropoutNd or a module saying `stochastic = True`. Every module a type adds to a
    model (anything but the plain layers, norms, activations and pools) must be one of them."""
    uncertainty = pytest.importorskip("regbench.engine.uncertainty")
    plain = (nn.Sequential, nn.Identity, nn.Linear, nn.Conv1d, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d,
             nn.MaxPool1d, nn.MaxPool2d, nn.Flatten, *ACTIVATIONS.values())
    net = build_model(cfg_for(name, model, dict(p=P, p_input=0.1, p_conv=0.2), batchnorm=True), INPUT_SHAPES[model], 10)
    added = [m for m in net.modules() if m is not net and not isinstance(m, plain)]
    assert added or name == "none"
    assert all(uncertainty.is_stochastic(m) for m in added), [type(m).__name__ for m in added]


@pytest.mark.parametrize("name", NAMES)
def test_check_rejects_mlp_for_conv_only_types_with_one_line(name):
    """Types that do not act on model=mlp refuse it (one line naming the type, model=cnn and the
    types valid for mlp, computed from the registry); every type accepts model=cnn."""
    valid_for_mlp = [n for n in NAMES if spec(n).acts_on("mlp")]
    assert {"none", "standard"} <= set(valid_for_mlp) and not {"spatial", "dropblock"} & set(valid_for_mlp)
    spec(name).check(cfg_for(name, "cnn2d"))
    if spec(name).acts_on("mlp"):
        spec(name).check(cfg_for(name, "mlp"))
        return
    with pytest.raises(ConfigError) as err:
        spec(name).check(cfg_for(name, "mlp"))
    msg = str(err.value)
    assert "\n" not in msg and f"dropout={name}" in msg and "model=cnn" in msg
    listed = msg.split("valid dropout types for mlp:")[1]
    assert [n.strip() for n in listed.split(",")] == valid_for_mlp


@pytest.mark.parametrize("name", NAMES)
def test_yaml_group_file_composes_and_validates(name, make_cfg):
    """conf/dropout/<name>.yaml exists, starts with a comment, and `dropout=<name>` composes
    into a valid config (with model=cnn for conv-only types)."""
    path = Path(regbench.__file__).parent / "conf" / "dropout" / f"{name}.yaml"
    assert path.read_text().startswith("#")
    cfg = make_cfg(f"dropout={name}", *(["model=cnn"] if not spec(name).acts_on("mlp") else []))
    assert cfg.dropout.name == name
    validate(cfg)
    spec(name).check(cfg)


# ---------------------------------------------------------------------------- drop rates (per-type table)


def _se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def test_every_type_declares_how_its_drop_rate_is_observed():
    assert set(NAMES) <= set(DROP_STAT), "add the new dropout type to DROP_STAT"


@pytest.mark.parametrize("name", [n for n in NAMES if DROP_STAT.get(n) != "block"])  # block: own test below
def test_observed_drop_rate(name):
    """1e5 Bernoulli trials per check; observed rate within 4 standard errors of p.
    element: share of zeroed activations; channel: share of all-zero (n, c) maps (1-D and
    2-D); weight: share of zeroed weights in the effective weight of one forward; alpha:
    share of outputs at the dropped value; noise: mean 1 and variance p/(1-p) of the
    multiplicative noise; block: test_dropblock_drop_fraction; nothing: no change."""
    kind = DROP_STAT[name]
    torch.manual_seed(0)
    cfg = cfg_for(name, "cnn2d", dict(p=P, p_conv=P))
    hidden = spec(name).slot_module(Slot("hidden", 0), P, cfg).train()
    x = torch.rand(1000, 100) + 0.5  # no zeros in the input
    with torch.no_grad():
        if kind == "nothing":
            assert torch.equal(hidden(x), x)
        elif kind == "element":
            assert abs((hidden(x) == 0).float().mean().item() - P) < 4 * _se(P, x.numel())
        elif kind == "channel":
            for dims, shape in ((1, (1000, 100, 3)), (2, (1000, 100, 2, 2))):
                module = spec(name).slot_module(Slot("conv", dims), P, cfg).train()
                dropped = (module(torch.rand(shape) + 0.5) == 0).flatten(2).all(-1)  # (N, C)
                assert abs(dropped.float().mean().item() - P) < 4 * _se(P, dropped.numel())
        elif kind == "weight":
            layer = nn.Linear(100, 1000, bias=False)
            w_eff = spec(name).wrap_layer(layer, P, cfg).train()(torch.eye(100)).T  # (out, in)
            assert abs((w_eff == 0).float().mean().item() - P) < 4 * _se(P, w_eff.numel())
        elif kind == "alpha":
            y = hidden(torch.randn(1000, 100))
            _, counts = y.unique(return_counts=True)
            assert abs(counts.max().item() / y.numel() - P) < 4 * _se(P, y.numel())  # dropped -> one value
        elif kind == "noise":
            r = hidden(torch.ones(1000, 100))  # the noise itself
            var, n = P / (1 - P), r.numel()
            assert abs(r.mean().item() - 1) < 4 * math.sqrt(var / n)
            assert abs(r.var().item() - var) < 4 * var * math.sqrt(2 / n)
        else:
            raise AssertionError(f"unknown DROP_STAT kind {kind!r}")


# ---------------------------------------------------------------------------- original vs standard


def test_original_is_standard_times_keep_probability_in_expectation():
    """original: eval(x) = (1-p) x and E[train(x)] = (1-p) x (unscaled mask); standard:
    eval(x) = x and E[train(x)] = x. So original == (1-p) * standard in expectation."""
    torch.manual_seed(0)
    cfg = cfg_for("original")
    orig = spec("original").slot_module(Slot("hidden", 0), P, cfg)
    std = spec("standard").slot_module(Slot("hidden", 0), P, cfg)
    x = torch.rand(64, 32) + 0.5
    with torch.no_grad():
        assert torch.equal(orig.eval()(x), x * (1 - P)) and torch.equal(std.eval()(x), x)
        train_values = orig.train()(x)
    assert torch.all((train_values == 0) | (train_values == x))  # kept units are not rescaled
    for module, target in ((orig, (1 - P) * x), (std, x)):
        samples = draws(module.train(), x, 1000)
        se = samples.std(0) / math.sqrt(len(samples))
        assert ((samples.mean(0) - target).abs() <= 5 * se).all()


# ---------------------------------------------------------------------------- alpha


@pytest.mark.parametrize("name", [n for n in NAMES if spec(n).activation == "selu"])
def test_alpha_keeps_mean_0_variance_1(name):
    """Standard-normal input (1e5 elements): training output has mean 0 and variance 1,
    each within 4 standard errors (estimated from the output); eval is the identity."""
    torch.manual_seed(0)
    module = spec(name).slot_module(Slot("hidden", 0), 0.1, cfg_for(name)).train()
    x = torch.randn(1000, 100)
    with torch.no_grad():
        y = module(x)
    n = y.numel()
    assert not torch.equal(y, x)
    assert abs(y.mean().item()) < 4 * y.std().item() / math.sqrt(n)
    sq = (y - y.mean()) ** 2
    assert abs(sq.mean().item() - 1) < 4 * sq.std().item() / math.sqrt(n)
    assert torch.equal(module.eval()(x), x)


# ---------------------------------------------------------------------------- spatial


@pytest.mark.parametrize("dims", [1, 2])
def test_spatial_drops_whole_feature_maps(dims):
    """Every (n, c) map is all zero or all kept and scaled by 1/(1-p); both occur."""
    torch.manual_seed(0)
    module = spec("spatial").slot_module(Slot("conv", dims), 0.5, cfg_for("spatial", "cnn2d")).train()
    x = torch.rand((16, 8, 12) if dims == 1 else (16, 8, 6, 6)) + 0.5
    y = module(x).flatten(2)
    zero, kept = (y == 0).all(-1), torch.isclose(y, x.flatten(2) * 2).all(-1)
    assert torch.all(zero ^ kept) and zero.any() and kept.any()


def test_spatial_uses_channel_dropout_on_maps_and_standard_dropout_in_the_head():
    net = build_model(cfg_for("spatial", "cnn2d", dict(p=0.5, p_conv=0.1, p_input=0.1)), INPUT_SHAPES["cnn2d"], 10)
    # torch's classes, subclassed only so a stack of cells can hand them a tensor rate
    kinds = [type(m).__mro__[1] for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    assert kinds == [nn.Dropout2d, nn.Dropout2d, nn.Dropout2d, nn.Dropout]  # input, 2 conv stages, 1 hidden
    net = build_model(cfg_for("spatial", "cnn1d", dict(p=0.5, p_conv=0.1)), INPUT_SHAPES["cnn1d"], 10)
    assert [type(m).__mro__[1] for m in net.modules() if isinstance(m, nn.modules.dropout._DropoutNd)] == [
        nn.Dropout1d, nn.Dropout1d, nn.Dropout]


# ---------------------------------------------------------------------------- dropblock


def _covering_seeds(size: int, b: int) -> torch.Tensor:
    """For each position of a 1-D map: how many valid block centres have it in their block."""
    cover = torch.zeros(size)
    for centre in range(b // 2, size - b // 2):
        cover[centre - b // 2 : centre + b // 2 + 1] += 1
    return cover


@pytest.mark.parametrize("shape,b,p", [((400, 16, 40), 3, 0.3), ((100, 8, 16, 16), 3, 0.3), ((25, 8, 32, 32), 5, 0.1)])
def test_dropblock_drop_fraction(shape, b, p):
    """What we check: with centres ~ Bernoulli(gamma), gamma = p*size/(b^d*valid), a position
    covered by c possible blocks is dropped with probability 1-(1-gamma)^c. The observed
    overall and interior (c = b^d) drop fractions match these exact values within 4 SE
    (SE inflated by b^d for the correlation within a block). Both are near p: overlaps
    pull the overall fraction below p and the edge correction pushes the interior above
    it, by less than 30% here."""
    torch.manual_seed(0)
    size = shape[2:]
    gamma = p * math.prod(size) / (b ** len(size) * math.prod(s - b + 1 for s in size))
    cover = _covering_seeds(size[0], b) if len(size) == 1 else torch.outer(*(_covering_seeds(s, b) for s in size))
    q = 1 - (1 - gamma) ** cover  # exact drop probability per position
    interior = (slice(b - 1, -(b - 1)),) * len(size)
    dropped = (drop_block(torch.ones(shape), p, b) == 0).float().mean((0, 1))  # per position
    n_interior = shape[0] * shape[1] * q[interior].numel()
    for observed, expected, n in ((dropped.mean(), q.mean(), math.prod(shape)),
                                  (dropped[interior].mean(), q[interior].mean(), n_interior)):
        se = math.sqrt(b ** len(size) * expected * (1 - expected) / n)
        assert abs(observed.item() - expected.item()) < 4 * se
        assert abs(expected.item() - p) < 0.3 * p


def _all_zero_block_cover(zero: torch.Tensor, b: int) -> torch.Tensor:
    """Positions lying in some b (x b) window, fully inside the map, that is all zero."""
    pool = F.max_pool1d if zero.ndim == 3 else F.max_pool2d
    z = zero.float()
    full = 1 - pool(1 - z, b, stride=1)  # 1 where the window starting here is all zero
    return pool(F.pad(full, [b - 1] * (2 * (zero.ndim - 2))), b, stride=1).bool()


@pytest.mark.parametrize("b", [3, 5])
@pytest.mark.parametrize("shape", [(16, 4, 30), (16, 4, 12, 12)])
def test_dropblock_zeroes_whole_blocks(shape, b):
    """With p=0.5 on an all-ones input: every zero lies in an all-zero b-wide segment (1-D)
    or b x b square (2-D) inside the map, and all kept values are equal (one rescale per
    batch). The same check rejects an element-wise mask of the same rate (it has teeth)."""
    torch.manual_seed(0)
    y = drop_block(torch.ones(shape), 0.5, b)
    zero = y == 0
    assert zero.any() and not zero.all()
    assert torch.equal(_all_zero_block_cover(zero, b), zero)
    assert torch.allclose(y[~zero], y[~zero][0])
    elementwise = torch.rand(shape) < 0.5
    assert not torch.equal(_all_zero_block_cover(elementwise, b), elementwise)


def test_dropblock_keeps_the_mean():
    """E[train] == input only in aggregate (edges are dropped less often than the interior):
    averaged over draws, the global mean of the output equals the input's within 1%."""
    torch.manual_seed(0)
    for shape in ((8, 4, 20), (8, 4, 10, 10)):
        x = torch.rand(shape) + 0.5
        mean = torch.stack([drop_block(x, P, 3) for _ in range(200)]).mean()
        assert abs(mean.item() / x.mean().item() - 1) < 0.01


def test_dropblock_clamps_large_blocks_to_an_odd_size_that_fits():
    assert [fit_block_size(7, 4), fit_block_size(3, 2), fit_block_size(5, 9, 5), fit_block_size(3, 1)] == [3, 1, 5, 1]
    torch.manual_seed(0)
    for shape in ((4, 3, 4), (4, 3, 4, 4), (4, 3, 2, 2), (4, 3, 1)):  # torchvision alone raises on 4x4 with block 5
        assert drop_block(torch.ones(shape), 0.5, 7).shape == shape


def test_dropblock_linear_schedule_ramps_from_0_to_p():
    cfg = cfg_for("dropblock", "cnn2d", dict(p=0.4, p_conv=0.4, schedule="linear"))
    module = spec("dropblock").slot_module(Slot("conv", 2), 0.4, cfg).train()
    x = torch.ones(8, 4, 10, 10)
    assert module.rate == 0.0
    module.set_progress(0.0)
    rng = torch.get_rng_state()
    assert torch.equal(module(x), x) and torch.equal(torch.get_rng_state(), rng)  # rate 0: identity, no draws
    module.set_progress(0.5)
    assert module.rate == pytest.approx(0.2)
    module.set_progress(1.0)
    assert module.rate == pytest.approx(0.4) and (module(x) == 0).any()
    constant = spec("dropblock").slot_module(Slot("conv", 2), 0.4, cfg_for("dropblock", "cnn2d")).train()
    constant.set_progress(0.0)
    assert constant.rate == 0.4
    # the training loop finds the modules to step by their set_progress method
    net = build_model(cfg_for("dropblock", "cnn1d", dict(p=0.5, p_conv=0.2, schedule="linear")), (1, 40), 10)
    stepped = [m for m in net.modules() if hasattr(m, "set_progress")]
    assert len(stepped) == 2 and all(isinstance(m, DropBlock) for m in stepped)


# ---------------------------------------------------------------------------- dropconnect


def _probe(layer: nn.Module) -> torch.Tensor:
    """A batch whose outputs reveal the weight each example used (read back by _decode).

    Linear: the identity matrix (row i of x @ W'^T is column i of W'). Conv (stride 1,
    'same' padding): example c is a delta at the centre of channel c, and its output around
    the centre, flipped, is W'[:, c] (cross-correlation)."""
    if isinstance(layer, nn.Linear):
        return torch.eye(layer.in_features)
    c, k = layer.in_channels, layer.kernel_size[0]
    size = 2 * k + 1
    probe = torch.zeros(c, c, *([size] * len(layer.kernel_size)))
    for i in range(c):
        probe[(i, i, *([size // 2] * len(layer.kernel_size)))] = 1
    return probe


def _decode(y: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    if layer.bias is not None:
        y = y - (layer.bias if isinstance(layer, nn.Linear) else layer.bias.view(1, -1, *[1] * (y.ndim - 2)))
    if isinstance(layer, nn.Linear):
        return y.T  # (out, in)
    dims, k = y.ndim - 2, layer.kernel_size[0]
    centre = y.shape[2] // 2
    window = y[(..., *([slice(centre - k // 2, centre + k // 2 + 1)] * dims))]  # (C_in, out, *k)
    return window.flip(list(range(2, 2 + dims))).transpose(0, 1)  # (out, C_in, *k)


def _is_masked_weight(w_eff: torch.Tensor, w: torch.Tensor, p: float) -> bool:
    return bool(torch.all((w_eff == 0) | torch.isclose(w_eff, w / (1 - p), rtol=1e-5, atol=1e-7)))


@pytest.mark.parametrize("mask", ["batch", "sample"])
@pytest.mark.parametrize("dims", [0, 1, 2])
def test_dropconnect_masks_weights_per_batch_or_per_sample(dims, mask):
    """Two copies of a probe batch in one forward reveal the weights each example used:
    always W * M / (1-p) for a 0/1 mask M (not an activation mask). mask=batch: both copies
    see the same M, and extra random rows equal x @ W'^T + b with that one W'. mask=sample:
    the copies see different masks. A second forward draws a new mask."""
    torch.manual_seed(0)
    layer, u = unit("dropconnect", dims, 0.5, mask=mask)
    assert isinstance(u[0], DropConnect) and u[0].layer is layer and type(u[1]) is nn.Identity
    probe = _probe(layer)
    extra = torch.randn(4, *probe.shape[1:])
    u.train()
    with torch.no_grad():
        y = u(torch.cat([probe, probe, extra]))
        w1, w2 = _decode(y[: len(probe)], layer), _decode(y[len(probe) : 2 * len(probe)], layer)
        again = _decode(u(probe), layer)
        for w in (w1, w2, again):
            assert _is_masked_weight(w, layer.weight, 0.5) and 0 < (w == 0).float().mean() < 1
        if mask == "batch":
            assert torch.equal(w1, w2)
            fn = F.linear if dims == 0 else layer._conv_forward
            torch.testing.assert_close(y[2 * len(probe) :], fn(extra, w1, layer.bias))
        else:
            assert not torch.equal(w1, w2)
        assert not torch.equal(again, w1)
        u.eval()
        assert torch.equal(u(probe), layer(probe))


def test_dropconnect_mean_weight_is_the_weight():
    """Averaged over 400 forwards, the effective weight is W (inverted scaling), per weight within 5 SE."""
    torch.manual_seed(0)
    layer, u = unit("dropconnect", 0, 0.5)
    with torch.no_grad():
        ws = torch.stack([_decode(u.train()(torch.eye(12)), layer) for _ in range(400)])
    se = ws.std(0) / math.sqrt(len(ws))
    assert ((ws.mean(0) - layer.weight).abs() <= 5 * se + 1e-7).all()


@pytest.mark.parametrize("model", ["mlp", "cnn1d", "cnn2d"])
def test_dropconnect_wraps_hidden_layers_and_per_sample_masks_backprop(model):
    cfg = cfg_for("dropconnect", model, dict(p=0.5, p_conv=0.2, p_input=0.3, mask="sample"), batchnorm=True)
    torch.manual_seed(0)
    net = build_model(cfg, INPUT_SHAPES[model], 10).train()
    wrapped = [m for m in net.modules() if isinstance(m, DropConnect)]
    n_weight_layers = len([m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))])
    assert len(wrapped) == n_weight_layers - 1  # all but the classifier
    assert {m.p for m in wrapped} == ({0.5} if model == "mlp" else {0.5, 0.2})
    x = torch.randn(5, *INPUT_SHAPES[model])
    F.cross_entropy(net(x), torch.arange(5)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_inverted_dropout_per_cell_rates_under_vmap():
    """Each cell's noise is 0 or 1/(1-p) at its own rate p (keep share within 4 standard errors), in
    the input's dtype; rate 0 is exactly ones (a rate-0 cell of a stack is its lone baseline)."""
    from torch.func import vmap

    from regbench.regularizers.base import inverted_dropout

    torch.manual_seed(0)
    rates = torch.tensor([0.0, 0.1, 0.5, 0.9])
    x = torch.ones(len(rates), 200, 100)
    noise = vmap(inverted_dropout, randomness="different")(x, rates)  # x of ones: the output is the noise
    assert noise.dtype == x.dtype and noise.shape == x.shape
    n = x[0].numel()
    for m, p in enumerate(rates.tolist()):
        scale = torch.tensor(1.0) / (1 - torch.tensor(p))  # float32, as the noise is formed
        assert set(noise[m].unique().tolist()) <= {0.0, scale.item()}, p
        kept = (noise[m] > 0).double().mean().item()
        assert abs(kept - (1 - p)) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12, (p, kept)
    assert torch.equal(noise[0], torch.ones_like(noise[0]))
    half = inverted_dropout(torch.ones(1000, dtype=torch.bfloat16), torch.tensor(0.5))
    assert half.dtype == torch.bfloat16 and set(half.unique().tolist()) <= {0.0, 2.0}
    maps = inverted_dropout(torch.ones(50, 4, 6), torch.tensor(0.5), like=torch.ones(50, 4, 1))
    assert torch.equal(maps.amin(-1), maps.amax(-1))  # one draw per (example, map), broadcast along it
