"""Every shipped experiment: a header that says the command, and every cell of its grid valid; the GPU recipes
(CIFAR-10, the published anchors) on small files in CIFAR's on-disk format, trained for a few steps."""

from __future__ import annotations

from importlib import resources

import pytest
from hydra import compose, initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from test_data import write_cifar

from regbench.cli.catalog import config_names
from regbench.engine.cells import Cell
from regbench.engine.loop import train
from regbench.engine.train import check_config
from regbench.rules.active import check_grid

EXPERIMENTS = config_names("experiment")
# the recipes of published CIFAR-10 results: they need a GPU and the CIFAR-10 files, so here they run on small files
GPU_RECIPES = [name for name in EXPERIMENTS if name.startswith("cifar10_")]


def test_the_issue_list_of_experiments_ships():
    wanted = {"mlp_dropout", "cnn_spatialdrop", "cnn_dropblock", "dropconnect_vs_dropout", "alpha_selu",
              "l2_vs_adamw", "l1_sparsity", "max_norm", "batchnorm_vs_dropout", "dropout_before_bn",
              "augment_vs_dropout", "mixup_cutmix", "per_layer_rates", "dropout_types"}
    assert wanted <= set(EXPERIMENTS)


@pytest.fixture
def cifar_root(tmp_path, no_md5):
    write_cifar(tmp_path / "data")
    return tmp_path / "data"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_header_and_grid(name, cifar_root):
    data_root = [f"dataset.root={cifar_root}"] if name in GPU_RECIPES else []
    text = resources.files("regbench.conf").joinpath(f"experiment/{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    assert f"regbench run -m +experiment={name}" in text  # the header says how to run it
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        base = compose(config_name="config", overrides=[f"+experiment={name}"], return_hydra_config=True)
        params = base.hydra.sweeper.params or {}
        assert params, "an experiment is a grid: hydra.sweeper.params"
        parser = OverridesParser.create()
        # seeds cannot make a cell invalid: check the grid of everything else
        overrides = parser.parse_overrides([f"{k}={v}" for k, v in params.items() if k != "seed"])
        [cells] = BasicSweeper.split_arguments(overrides, None)
        data, cfgs = {}, []
        for cell in cells:
            cfg = compose(config_name="config", overrides=[f"+experiment={name}", *cell, *data_root])
            key = repr(sorted(cfg.dataset.items()))
            _, data[key] = check_config(cfg, data.get(key))  # raises ConfigError for an invalid cell
            cfgs.append(cfg)
        check_grid(cfgs)  # no setting of the experiment is a no-op in every cell


def test_gpu_recipes_state_their_anchor_and_say_they_are_not_reproduced_here():
    assert len(GPU_RECIPES) >= 3
    for name in GPU_RECIPES:
        text = resources.files("regbench.conf").joinpath(f"experiment/{name}.yaml").read_text()
        assert "Published:" in text and "% test error" in text and "NOT REPRODUCED HERE" in text, name
        assert "Protocol:" in text, name


@pytest.mark.parametrize("name", [n if "wrn" not in n else pytest.param(n, marks=pytest.mark.slow)
                                  for n in GPU_RECIPES])
def test_a_gpu_recipe_trains_a_few_steps_on_small_cifar_files(name, cifar_root, tmp_path):
    # the recipe's own model, optimizer, schedule and augmentation, on 50 images: 2 epochs of one step of 16, on the
    # CPU, its lr dropping after the first (a milestone at or beyond the epochs is refused: it would never act)
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        base = compose(config_name="config", overrides=[f"+experiment={name}"], return_hydra_config=True)
        grid = {k: str(v).split(",")[-1] for k, v in base.hydra.sweeper.params.items() if k != "seed"}
        drop = {"multistep": ["optim.milestones=[1]"], "step": ["optim.step_size=1"]}.get(base.optim.schedule, [])
        cfg = compose(config_name="config", overrides=[
            f"+experiment={name}", *(f"{k}={v}" for k, v in grid.items()), f"dataset.root={cifar_root}",
            "dataset.val_fraction=0.2", "dataset.train_size=16", "trainer.batch_size=16", "trainer.epochs=2", *drop,
            "trainer.train_eval_size=8", "trainer.progress=false", "trainer.device=cpu", "report=false",
            f"results_dir={tmp_path / 'runs'}"])
    cell = Cell(cfg=cfg)
    train([cell])
    assert cell.summary["status"] == "completed" and cell.summary["epochs_completed"] == 2
    assert cell.summary["data"]["n_train"] == 16
