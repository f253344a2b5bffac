"""Every shipped experiment: a header that says the command, and every cell of its grid valid."""

from __future__ import annotations

from importlib import resources

import pytest
from hydra import compose, initialize_config_module
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from regbench.cli.catalog import config_names
from regbench.engine.train import check_config
from regbench.rules.active import check_grid

EXPERIMENTS = config_names("experiment")


def test_the_issue_list_of_experiments_ships():
    wanted = {"mlp_dropout", "cnn_spatialdrop", "cnn_dropblock", "dropconnect_vs_dropout", "alpha_selu",
              "l2_vs_adamw", "l1_sparsity", "max_norm", "batchnorm_vs_dropout", "dropout_before_bn",
              "augment_vs_dropout", "mixup_cutmix", "per_layer_rates", "dropout_types"}
    assert wanted <= set(EXPERIMENTS)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_header_and_grid(name):
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
            cfg = compose(config_name="config", overrides=[f"+experiment={name}", *cell])
            key = repr(sorted(cfg.dataset.items()))
            _, data[key] = check_config(cfg, data.get(key))  # raises ConfigError for an invalid cell
            cfgs.append(cfg)
        check_grid(cfgs)  # no setting of the experiment is a no-op in every cell
