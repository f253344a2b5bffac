"""The declaration of which keys act when (regbench/rules/active.py): every rule names real keys, the
defaults pass, and a sweep may share a setting between cells that use it and cells that do not."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from regbench.core.errors import ConfigError
from regbench.rules import active
from regbench.rules.config import register_configs

register_configs()


def _cfg(*overrides):
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_every_rule_names_a_schema_key():
    cfg = _cfg()
    for rule in active._rules():
        for key in rule.keys:
            assert OmegaConf.select(cfg, key, default="<missing>") != "<missing>", key


@pytest.mark.parametrize("group,name", [("dropout", n) for n in ("none", "standard", "dropconnect", "alpha")]
                         + [("optim", n) for n in ("sgd", "adam", "adamw")]
                         + [("augment", n) for n in ("flip_crop", "mixup", "cutmix", "strong")]
                         + [("dataset", n) for n in ("mnist1d", "synthetic", "mnist")])
def test_a_group_choice_alone_sets_nothing_ineffective(group, name):
    assert active.ineffective(_cfg(f"{group}={name}")) == {}


def test_group_file_values_are_defaults_not_user_settings():
    cfg = _cfg("dropout=standard", "dropout.per_layer=[0.1,0.2]")  # standard.yaml's p=0.5 is not "given"
    assert active.ineffective(cfg) == {}
    cfg = _cfg("dropout=standard", "dropout.p=0.3", "dropout.per_layer=[0.1,0.2]")
    assert list(active.ineffective(cfg)) == ["dropout.p"]


def test_grid_shares_a_setting_with_a_baseline_cell():
    cells = [_cfg(f"dropout={d}", "dropout.p=0.3") for d in ("none", "standard")]
    active.check_grid(cells)  # p acts in the standard cell: an ordinary shared setting
    with pytest.raises(ConfigError, match="dropout.p=0.3 has no effect with dropout=none"):
        active.check_grid([_cfg("dropout.p=0"), _cfg("dropout.p=0.3")])


def test_cnn_conv_rate_and_1d_augment_params_are_active():
    cfg = _cfg("model=cnn", "dataset=mnist1d", "dropout=spatial", "dropout.p_conv=0.3", "augment=shift_noise",
               "augment.crop_pad=4", "augment.scale=0.2", "augment.noise_std=0.05")
    assert active.ineffective(cfg) == {}


def test_grid_cells_that_repeat_another_are_named(caplog):
    cells = [_cfg(f"dropout={d}", f"dropout.p={p}") for d in ("none", "standard") for p in (0.1, 0.3)]
    with caplog.at_level("WARNING", logger="regbench"):
        active.check_grid(cells)
    assert "1 cell(s) of this sweep train the same configuration" in caplog.text and "dropout.p" in caplog.text
