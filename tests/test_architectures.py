"""model=resnet and model=vit, with the regularizers that belong to them: drop path, attention dropout,
WRN dropout, DropBlock and spatial dropout in their papers' places, refusals of what cannot act, and
stacks that compute what lone runs compute (tests/e2e/test_architectures_e2e.py runs them from the shell)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest
import torch
from conftest import read_metrics
from omegaconf import OmegaConf
from torch import nn

from regbench.core.errors import ConfigError
from regbench.engine.cells import Cell
from regbench.engine.loop import train
from regbench.engine.optimizers import lr_factor, param_groups
from regbench.engine.stack import Stacked
from regbench.models import ARCHITECTURES, build_model
from regbench.models.resnet import blocks_per_stage
from regbench.regularizers import streams
from regbench.regularizers.drop_path import DropPath, block_rates, drop_path
from regbench.regularizers.penalties import weight_names
from regbench.rules.active import check_effective, check_grid
from regbench.rules.config import ADDED_KEYS, MODELS, config_hash, hashable_dict, plain_config
from regbench.rules.validate import validate

RESNET = ["model=resnet", "model.depth=8"]
VIT = ["model=vit", "model.depth=2", "model.dim=16", "model.heads=2"]
MNIST1D = ["dataset=mnist1d", "dataset.num_samples=600"]


def built(make_cfg, *overrides: str, shape=(1, 8, 8), classes: int = 10) -> nn.Module:
    """The model of a validated config, on the meta device (shapes only)."""
    cfg = make_cfg(*overrides)
    validate(cfg)
    with torch.device("meta"):
        return build_model(cfg, shape, classes)


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_every_model_name_has_one_class():
    assert set(ARCHITECTURES) == set(MODELS)


# ---------------------------------------------------------------------------- the networks


@pytest.mark.parametrize(("depth", "n"), [(8, 1), (20, 3), (56, 9), (110, 18), (10, 1), (16, 2), (28, 4)])
def test_depth_counts_layers_as_each_paper_names_them(depth, n):
    assert blocks_per_stage(depth) == n  # 6n+2 (He et al.) or 6n+4 (wide ResNets also count the projections)


@pytest.mark.parametrize("depth", [7, 9, 21, 2])
def test_a_depth_of_neither_form_is_refused_in_one_line(make_cfg, depth):
    with pytest.raises(ConfigError, match=rf"^model.depth={depth} is not valid for model=resnet; valid: 6n\+2") as err:
        validate(make_cfg("model=resnet", f"model.depth={depth}"))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("overrides", "published"), [
    (["model.depth=20"], 0.27e6),  # He et al. 2016, Table 6
    (["model.depth=56"], 0.85e6),
    (["model.depth=110"], 1.7e6),
    (["model.depth=16", "model.widen=8", "model.preact=true"], 11.0e6),  # Zagoruyko & Komodakis 2016, Table 4
    (["model.depth=28", "model.widen=10", "model.preact=true"], 36.5e6),
])
def test_cifar_networks_have_their_papers_sizes(make_cfg, overrides, published):
    # option-B projections (1x1 convolutions) add about 1% to He et al.'s option-A counts
    assert params(built(make_cfg, "model=resnet", *overrides, shape=(3, 32, 32))) == pytest.approx(published, rel=0.03)


@pytest.mark.parametrize("shape", [(1, 40), (1, 8, 8), (3, 32, 32)])
@pytest.mark.parametrize("overrides", [RESNET, [*RESNET, "model.preact=true"], [*RESNET, "model.batchnorm=false"],
                                       [*VIT, "model.patch=4"]])
def test_both_networks_run_on_signals_and_images(make_cfg, shape, overrides):
    cfg = make_cfg(*overrides)
    validate(cfg)
    model = build_model(cfg, shape, 7)
    x = torch.randn(3, *shape)
    assert model.train()(x).shape == model.eval()(x).shape == (3, 7)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bool(norms) == (cfg.model.name == "resnet" and cfg.model.batchnorm)


def _slots(model: nn.Module, suffix: str) -> list[nn.Module]:
    return [m for name, m in model.named_modules() if name.endswith(suffix)]


def test_resnet_places_each_dropout_type_where_its_paper_does(make_cfg):
    # WRN: standard dropout between the convolutions of every block (p_conv), and p before the classifier
    wrn = built(make_cfg, *RESNET, "dropout=standard", "dropout.p_conv=0.3", "dropout.p=0.1")
    assert [float(m.p) for m in _slots(wrn, ".drop")] == [0.3] * 3
    assert all(isinstance(wrn.stages[s][-1], nn.Identity) for s in range(3))  # no slot after a stage
    # dropout.p alone sets both, as a CNN's conv slots fall back to p
    both = built(make_cfg, *RESNET, "dropout=standard", "dropout.p=0.2")
    assert [float(m.p) for m in _slots(both, ".drop")] == [0.2] * 3 and float(both.head_drop.p) == 0.2
    assert float(wrn.head_drop.p) == 0.1
    # DropBlock inside the residual branches of the last two stages only (Ghiasi et al.; timm)
    db = built(make_cfg, *RESNET, "dropout=dropblock", "dropout.p_conv=0.2")
    assert [type(m).__name__ for m in _slots(db, ".drop")] == ["Identity", "DropBlock", "DropBlock"]
    # spatial dropout after each stage, none inside the blocks
    sp = built(make_cfg, *RESNET, "dropout=spatial", "dropout.p_conv=0.2", shape=(1, 40))
    assert [type(m).__name__ for m in _slots(sp, ".drop")] == ["Identity"] * 3
    assert [type(sp.stages[s][-1]).__name__ for s in range(3)] == ["Dropout1d"] * 3


def test_vit_places_attention_and_residual_dropout_as_timm_does(make_cfg):
    vit = built(make_cfg, *VIT, "dropout=standard", "dropout.p=0.1", "dropout.p_attn=0.2")
    assert [float(m.p) for m in _slots(vit, "attn_drop")] == [0.2, 0.2]
    residual = _slots(vit, "proj_drop") + [m for b in vit.blocks for m in (b.mlp[2], b.mlp[4])]
    assert sorted(float(m.p) for m in residual) == [0.1] * 6
    assert float(vit.head_drop.p) == 0.1
    plain = built(make_cfg, *VIT)
    assert not any(streams_drawing_module(m) for m in plain.modules())  # dropout=none: nothing draws


def streams_drawing_module(m: nn.Module) -> bool:
    return getattr(m, "stochastic", False) is True


@pytest.mark.parametrize(("overrides", "blocks"), [(RESNET, 3), ([*VIT], 2), (["model=resnet", "model.depth=20"], 9)])
def test_drop_path_rises_linearly_over_the_blocks(make_cfg, overrides, blocks):
    model = built(make_cfg, *overrides, "reg.drop_path=0.3")
    rates = [float(m.p) if isinstance(m, DropPath) else 0.0 for m in _slots(model, "drop_path")]
    assert rates == pytest.approx(block_rates(0.3, blocks)) and rates[0] == 0 and rates[-1] == pytest.approx(0.3)
    assert block_rates(0.3, 1) == [0.3]


def test_drop_path_drops_whole_examples_and_keeps_the_mean():
    x = torch.ones(4000, 3, 5)
    torch.manual_seed(0)
    y = drop_path(x, 0.25, training=True)
    per_example = y.flatten(1)
    assert ((per_example == 0).all(1) | (per_example == 1 / 0.75).all(1)).all()  # a branch is kept or dropped whole
    dropped = (per_example == 0).all(1).float().mean().item()
    se = math.sqrt(0.25 * 0.75 / 4000)
    assert abs(dropped - 0.25) < 4 * se
    assert torch.equal(drop_path(x, 0.25, training=False), x)


def test_embeddings_and_norms_are_not_decayed(make_cfg):
    cfg = make_cfg(*VIT, "optim=adamw", "optim.weight_decay=0.05")
    model = build_model(cfg, (1, 8, 8), 10)
    names = weight_names(model)
    assert not {"pos_embed", "cls_token"} & names and "blocks.0.attn.qkv.weight" in names
    assert "patch_embed.weight" in names and not any("norm" in n or n.endswith("bias") for n in names)
    decayed = {id(p) for p in param_groups(model, 0.05, False)[0]["params"]}
    assert id(model.pos_embed) not in decayed and id(model.classifier.weight) in decayed
    stacked = Stacked([model, build_model(cfg, (1, 8, 8), 10)], [cfg, cfg], 1, torch.device("cpu"),
                      [streams.generator(s, "noise") for s in (0, 1)])
    assert {k for k, d in stacked.decay.items() if d} == names


def test_multistep_schedule_drops_at_its_milestones(make_cfg):
    cfg = make_cfg("optim=sgd", "optim.schedule=multistep", "optim.milestones=[2,3]", "optim.gamma=0.1")
    validate(cfg)
    factor = lr_factor(cfg.optim, epochs=5, steps_per_epoch=10)
    assert [factor(10 * e) for e in range(5)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])


# ---------------------------------------------------------------------------- what cannot act is refused


REFUSED = [  # (overrides, the start of the one-line error)
    (["reg.drop_path=0.1"],
     "reg.drop_path=0.1 has no effect with model=mlp (no residual branches); valid: model=resnet|vit"),
    (["model=cnn", "reg.drop_path=0.1"], "reg.drop_path=0.1 has no effect with model=cnn"),
    (["model=resnet", "dropout=standard", "dropout.p_attn=0.1"], "dropout.p_attn=0.1 has no effect with model=resnet"),
    (["dropout=standard", "dropout.p_attn=0.1"], "dropout.p_attn=0.1 has no effect with model=mlp"),
    (["model=vit", "dropout.p_attn=0.1"], "dropout.p_attn=0.1 has no effect with dropout=none"),
    (["model=vit", "dropout=standard", "dropout.p_conv=0.2"], "dropout.p_conv=0.2 has no effect with model=vit"),
    (["model=vit", "model.batchnorm=true"], "model.batchnorm=true has no effect with model=vit"),
    (["model=vit", "model.widen=2"], "model.widen=2 has no effect with model=vit"),
    (["model=resnet", "model.heads=8"], "model.heads=8 has no effect with model=resnet"),
    (["model=cnn", "model.depth=20"], "model.depth=20 has no effect with model=cnn"),
    (["model=resnet", "model.hidden=[64]"], "model.hidden=[64] has no effect with model=resnet"),
    (["model=resnet", "dropout=standard", "dropout.per_layer=[0.1,0.2]"], "dropout.per_layer=[0.1,0.2] has no effect"),
    (["model=resnet", "dropout=alpha"], "dropout=alpha does not act on model=resnet"),
    (["model=vit", "dropout=dropconnect"], "dropout=dropconnect does not act on model=vit"),
    (["model=vit", "dropout=spatial"], "dropout=spatial does not act on model=vit"),
    (["model=vit", "dropout=dropblock"], "dropout=dropblock does not act on model=vit"),
    (["model=vit", "model.dim=30", "model.heads=4"], "model.dim=30 is not a multiple of model.heads=4; valid: "
                                                     "model.heads=1|2|3|5|6|10|15|30"),
    (["model=vit", "reg.drop_path=1.0"], "reg.drop_path=1.0 is out of range; valid values: [0, 1)"),
    (["optim.schedule=multistep"], "optim.schedule=multistep needs optim.milestones"),
    (["optim.schedule=multistep", "optim.milestones=[5,3]"], "optim.milestones=[5, 3] is not valid"),
    (["optim.milestones=[5]"], "optim.milestones=[5] has no effect with optim.schedule=none"),
    # a drop at or after the last epoch would never happen (epochs count from 0)
    (["optim.schedule=multistep", "optim.milestones=[2,5]", "trainer.epochs=5"],
     "optim.milestones=[2,5] has no effect at epoch 5 with trainer.epochs=5 (the lr would never drop there); "
     "valid: milestones 1..4, or more trainer.epochs"),
    (["optim.schedule=multistep", "optim.milestones=[1]", "trainer.epochs=1"],
     "optim.milestones=[1] has no effect at epoch 1 with trainer.epochs=1 (the lr would never drop there); "
     "valid: trainer.epochs >= 2"),
    (["optim.schedule=step", "trainer.epochs=10"],
     "optim.schedule=step has no effect with optim.step_size=10 and trainer.epochs=10 (the lr would never drop); "
     "valid: optim.step_size=1..9"),
    (["optim.schedule=step", "optim.step_size=12", "trainer.epochs=10"],
     "optim.step_size=12 has no effect with trainer.epochs=10"),
    # drops inside the warm-up would all land at its end (milestones [2] and [4] would train the same)
    (["optim.schedule=multistep", "optim.milestones=[2,8]", "optim.warmup_epochs=5", "trainer.epochs=10"],
     "optim.milestones=[2,8] has no effect at epoch 2 inside optim.warmup_epochs=5"),
    (["optim.schedule=multistep", "optim.milestones=[3]", "optim.warmup_epochs=5", "trainer.epochs=5"],
     "optim.milestones=[3] has no effect at epoch 3 inside optim.warmup_epochs=5 (the warm-up sets the lr until "
     "then); valid: optim.warmup_epochs < trainer.epochs=5"),
    (["optim.schedule=cosine", "optim.warmup_epochs=3", "trainer.epochs=3"],
     "optim.schedule=cosine has no effect with optim.warmup_epochs=3 and trainer.epochs=3 (the warm-up takes"),
    (["optim.schedule=step", "optim.step_size=2", "optim.gamma=1"],
     "optim.gamma=1.0 is out of range; valid values: (0, 1)"),
    # MC dropout needs a model that draws
    (["eval.mc_samples=5"], "eval.mc_samples=5 has no effect with dropout=none and no drop path"),
    (["dropout=standard", "dropout.p=0", "eval.mc_samples=5"],
     "eval.mc_samples=5 has no effect with dropout=standard at rate 0 and no drop path"),
    # the model's missing slot is the reason, before the missing dropout type
    (["model=resnet", "dropout.p_attn=0.1"], "dropout.p_attn=0.1 has no effect with model=resnet (no attention)"),
    (["model=vit", "dropout=standard", "dropout.per_layer=[0.1]"],
     "dropout.per_layer=[0.1] has no effect with model=vit (its MLPs sit inside the transformer blocks"),
    (["model=vit", "model.mlp_ratio=0.001"], "model.mlp_ratio=0.001 gives the blocks' MLPs no hidden unit"),
    (["model=resnet", "trainer.batch_size=1"], "trainer.batch_size=1 with BatchNorm (model=resnet"),
    (["model.batchnorm=true", "trainer.batch_size=1"], "trainer.batch_size=1 with BatchNorm (model=mlp"),
]


def test_a_drop_at_the_last_epoch_acts_and_is_accepted(make_cfg):
    cfg = make_cfg("optim.schedule=multistep", "optim.milestones=[4]", "optim.gamma=0.1", "trainer.epochs=5")
    validate(cfg)
    factor = lr_factor(cfg.optim, epochs=5, steps_per_epoch=10)
    assert factor(10 * 3) == 1 and factor(10 * 4) == pytest.approx(0.1)
    check_effective(cfg)
    check_effective(make_cfg("optim.schedule=step", "optim.step_size=4", "trainer.epochs=5"))


def test_what_acts_is_accepted(make_cfg):
    for overrides in (["model=vit", "trainer.batch_size=1"], ["model=resnet", "reg.drop_path=0.1", "eval.mc_samples=5"],
                      ["dropout=standard", "dropout.p=0", "dropout.p_input=0.2", "eval.mc_samples=5"],
                      ["optim.schedule=multistep", "optim.milestones=[5]", "optim.warmup_epochs=5"],
                      ["optim.schedule=cosine", "optim.warmup_epochs=2", "trainer.epochs=3"],
                      # step drops inside the warm-up fold into one at its end, then go on: they act
                      ["optim.schedule=step", "optim.step_size=2", "optim.warmup_epochs=5", "trainer.epochs=10"]):
        cfg = make_cfg(*overrides)
        validate(cfg)
        check_effective(cfg)


def test_a_value_is_refused_in_a_sweep_only_where_it_acts_in_no_cell_holding_it(make_cfg):
    def grid(*cells):
        return [make_cfg(*cell) for cell in cells]

    # batchnorm=true is the ResNet's own default and acts there: the ViT cell ignoring it is fine
    check_grid(grid(["model=resnet", "model.batchnorm=true"], ["model=vit", "model.batchnorm=true"]))
    # the rate-0 baseline of an MC-dropout sweep
    check_grid(grid(*(["dropout=standard", f"dropout.p={p}", "eval.mc_samples=30"] for p in (0, 0.3))))
    # one swept value that acts nowhere: its cells would train without the drop they name
    late = r"^optim.milestones=\[5\] has no effect .* \(in every cell with this value\)$"
    with pytest.raises(ConfigError, match=late):
        check_grid(grid(*(["optim.schedule=multistep", f"optim.milestones=[{m}]", "trainer.epochs=3"] for m in (1, 5))))


def test_a_late_drop_passes_a_sweep_where_some_cell_reaches_it(make_cfg):
    # the grid rule: refused only where it acts in no cell (here the 20-epoch cell drops at 10)
    check_grid([make_cfg("optim.schedule=step", f"trainer.epochs={e}") for e in (5, 20)])
    with pytest.raises(ConfigError, match="in every cell of the sweep"):
        check_grid([make_cfg("optim.schedule=step", f"trainer.epochs={e}") for e in (5, 10)])


@pytest.mark.parametrize(("overrides", "message"), REFUSED, ids=[" ".join(o) for o, _ in REFUSED])
def test_a_key_that_cannot_act_is_refused_in_one_line(make_cfg, overrides, message):
    from regbench.regularizers import DROPOUTS

    cfg = make_cfg(*overrides)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
        DROPOUTS.get(cfg.dropout.name).check(cfg)
        check_effective(cfg)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_patch_that_does_not_divide_the_input_is_refused_with_the_ones_that_do(make_cfg):
    with pytest.raises(ConfigError, match=r"^model.patch=3 does not divide the input's 8x8 positions; "
                                          r"valid: model.patch=1\|2\|4\|8$"):
        built(make_cfg, "model=vit", "model.patch=3")


# ---------------------------------------------------------------------------- hashes of earlier runs


def test_keys_added_later_leave_earlier_configs_hashes_alone(make_cfg):
    cfg = make_cfg("dropout=standard")
    plain = hashable_dict(cfg)
    assert "depth" not in plain["model"] and "drop_path" not in plain["reg"] and "p_attn" not in plain["dropout"]
    # a config as a run wrote it before the keys existed hashes as today's default config does
    old = OmegaConf.create(plain_config(cfg))
    for key in ADDED_KEYS:
        group, leaf = key.split(".")
        assert old[group].pop(leaf) == ADDED_KEYS[key]
    assert config_hash(old) == config_hash(cfg)
    # the defaults themselves are part of every earlier hash: changing one would make runs written at the old
    # default collide with new runs at that value
    assert ADDED_KEYS == {"model.depth": None, "model.widen": 1, "model.preact": False, "model.dim": 64,
                          "model.heads": 4, "model.mlp_ratio": 2.0, "model.patch": 2, "dropout.p_attn": 0.0,
                          "optim.milestones": None, "reg.drop_path": 0.0}
    resnet = make_cfg("model=resnet")
    assert hashable_dict(resnet)["model"]["depth"] == 20
    assert config_hash(make_cfg("model=vit", "reg.drop_path=0.1")) != config_hash(make_cfg("model=vit"))


def test_a_reference_run_still_has_the_hash_it_was_written_with():
    import json

    results = Path(__file__).resolve().parents[1] / "results"
    run = next(p.parent for p in sorted((results / "mlp_dropout").glob("*/summary.json")))
    written = json.loads((run / "summary.json").read_text())["config_hash"]
    assert config_hash(OmegaConf.load(run / "config.yaml")) == written


# ---------------------------------------------------------------------------- stacks compute what lone runs compute


ROUNDING = 1e-5  # float rounding of batched kernels over a few steps (measured: exact to ~1e-7)
# One stack per case: each cell beside stack-mates that put a regularizer where it has none (rate 0 there) and
# the other way round, so a cell's draws must not depend on its stack-mates' rates.
STACK_CASES = {
    "resnet-drop_path-wrn": (RESNET, ["dropout=standard", "dropout.p=0"],
                             [["dropout.p_conv=0.3", "reg.drop_path=0"], ["dropout.p_conv=0", "reg.drop_path=0.3"],
                              ["dropout.p_conv=0.2", "reg.drop_path=0.2"], ["dropout.p_conv=0", "reg.drop_path=0"]]),
    "resnet1d-dropblock": ([*RESNET, *MNIST1D], ["dropout=dropblock", "dropout.p=0"],
                           [["dropout.p_conv=0.3"], ["dropout.p_conv=0", "reg.drop_path=0.2"],
                            ["dropout.p_conv=0.1", "reg.drop_path=0.1"]]),
    "resnet-spatial-preact": ([*RESNET, "model.preact=true"], ["dropout=spatial"],
                              [["dropout.p_conv=0.3", "dropout.p=0"], ["dropout.p_conv=0", "dropout.p=0.5"]]),
    "vit-attn-drop_path": (VIT, ["dropout=standard"],
                           [["dropout.p=0", "dropout.p_attn=0.3"], ["dropout.p=0.2", "dropout.p_attn=0"],
                            ["dropout.p=0", "dropout.p_attn=0", "reg.drop_path=0.3"]]),
    "vit1d-drop_path": ([*VIT, *MNIST1D, "model.patch=4"], [],
                        [["reg.drop_path=0.4"], ["reg.drop_path=0"], ["reg.drop_path=0.1"]]),
    # MC passes over drop path (the evaluation stream), mixup, label smoothing and max-norm per cell
    "resnet-mixup-mc": (RESNET, ["augment=mixup", "eval.mc_samples=3", "reg.max_norm=2"],
                        [["reg.drop_path=0.3", "reg.label_smoothing=0.1"], ["reg.drop_path=0"],
                         ["reg.drop_path=0.1", "reg.label_smoothing=0.2"]]),
}
FAST_STACK_CASES = ("resnet-drop_path-wrn", "vit-attn-drop_path")


def _metrics(cell: Cell) -> list[dict]:
    return read_metrics(Path(cell.summary["run_dir"]))


def _cells(make_cfg, root, model, common, grid, *extra):
    base = [*model, *common, "trainer.progress=false", "report=false", "dataset.train_size=192", *extra]
    return [Cell(cfg=make_cfg(*base, *cell, f"results_dir={root}")) for cell in grid]


@pytest.mark.parametrize("case", [c if c in FAST_STACK_CASES else pytest.param(c, marks=pytest.mark.slow)
                                  for c in STACK_CASES])
def test_a_cell_draws_the_same_in_any_stack_as_alone(make_cfg, tmp_path, case):
    model, common, grid = STACK_CASES[case]
    stacked = _cells(make_cfg, tmp_path / "stack", model, common, grid, "trainer.epochs=1")
    train(stacked)
    assert all(c.summary["stack_cells"] == len(grid) for c in stacked)  # one stack, no cell sent off alone
    for i, cell in enumerate(stacked):
        [alone] = _cells(make_cfg, tmp_path / f"alone{i}", model, common, [grid[i]], "trainer.epochs=1")
        train([alone])
        for a, b in zip(_metrics(cell), _metrics(alone), strict=True):
            for key in ("train_loss", "val_loss", "batch_loss", "train_acc", "val_acc"):
                assert float(a[key]) == pytest.approx(float(b[key]), abs=ROUNDING), (grid[i], key)
        if alone.summary.get("mc"):
            assert cell.summary["mc"]["test"] == pytest.approx(alone.summary["mc"]["test"], abs=ROUNDING)
    losses = [float(_metrics(c)[-1]["batch_loss"]) for c in stacked]
    assert len(set(losses)) == len(losses)  # other rates, other numbers: the comparison can fail


# Over whole runs the two differ by rounding only, but a ResNet's BatchNorm and Adam amplify rounding over many
# steps (stack_matrix: ~1e-4), so the long-run check is the statistical one: paired by seed, the mean difference
# of test accuracy between a stacked and a lone run lies within 4 standard errors of 0, with a floor of one test
# example (identical runs have no spread).
STAT_CASES = {
    "resnet1d-drop_path": ([*RESNET, *MNIST1D], ["reg.drop_path=0.2"]),
    "resnet-wrn-dropout": (RESNET, ["dropout=standard", "dropout.p=0", "dropout.p_conv=0.3"]),
    "resnet-dropblock": ([*RESNET, *MNIST1D], ["dropout=dropblock", "dropout.p=0", "dropout.p_conv=0.2"]),
    "vit-drop_path": (VIT, ["reg.drop_path=0.2"]),
    "vit-attention-dropout": (VIT, ["dropout=standard", "dropout.p=0", "dropout.p_attn=0.2"]),
}
SEEDS = 4


@pytest.mark.parametrize("case", [c if c == "vit-attention-dropout" else pytest.param(c, marks=pytest.mark.slow)
                                  for c in STAT_CASES])
def test_stacked_and_lone_runs_agree_paired_by_seed(make_cfg, tmp_path, case):
    model, regularizer = STAT_CASES[case]
    common = [*model, *regularizer, "trainer.epochs=2", "trainer.progress=false", "report=false",
              "dataset.train_size=300"]
    seeds = [[f"seed={s}"] for s in range(SEEDS)]
    stacked = [Cell(cfg=make_cfg(*common, *s, f"results_dir={tmp_path / 'stack'}")) for s in seeds]
    train(stacked)
    assert all(c.summary["stack_cells"] == SEEDS for c in stacked)
    diffs, n_test = [], stacked[0].summary["data"]["n_test"]
    for s, cell in zip(seeds, stacked, strict=True):
        alone = Cell(cfg=make_cfg(*common, *s, f"results_dir={tmp_path / 'alone'}"))
        train([alone])
        diffs.append(cell.summary["test"]["acc"] - alone.summary["test"]["acc"])
    se = statistics.stdev(diffs) / math.sqrt(SEEDS)
    assert abs(statistics.mean(diffs)) <= 4 * se + 1 / n_test, diffs


def test_the_memory_estimate_splits_a_large_resnet_stack(cli, make_cfg):
    from regbench.data import build_splits
    from regbench.engine.stack import bytes_per_cell

    cfg = make_cfg(*RESNET)
    data = build_splits(cfg.dataset, "cpu")
    model = build_model(cfg, data.input_shape, data.num_classes)
    per_cell = bytes_per_cell(model, data.input_shape, cfg.trainer.batch_size, cfg.optim.name) + 8 * len(data.x_train)
    assert per_cell > 4 * sum(p.numel() for p in model.parameters()) * 4  # activations counted, not weights only
    budget_gb = 2.5 * per_cell / 2**30  # room for two cells
    code, out, err = cli("run", "-m", *RESNET, "reg.drop_path=0,0.1,0.2,0.3", "trainer.epochs=1",
                         "trainer.progress=false", "report=false", f"hydra.launcher.max_memory_gb={budget_gb}")
    assert code == 0 and "split into stacks of [2, 2]" in out + err


def test_a_plugin_type_that_only_wraps_weight_layers_is_refused_on_residual_networks(make_cfg):
    from regbench.regularizers.base import DropoutSpec

    class WrapsOnly(DropoutSpec):  # a DropConnect-like plugin: no activation slots, strength from dropout.p
        name = "wraps_only"
        activation_slots = False

    spec = WrapsOnly()
    assert spec.acts_on("mlp") and spec.acts_on("cnn") and not spec.acts_on("resnet") and not spec.acts_on("vit")
    with pytest.raises(ConfigError, match=r"^dropout=wraps_only does not act on model=vit \(it wraps weight layers"):
        spec.check(make_cfg("model=vit"))
