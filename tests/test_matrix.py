"""Every dropout type and every augmentation trains end to end, on digits (images) and mnist1d
(1-D signals), with each model it applies to: the registry-driven smoke matrix."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAST, read_metrics

from regbench.cli.catalog import config_names
from regbench.data.augment import AUGMENTS, KINDS
from regbench.engine.train import run
from regbench.regularizers import DROPOUTS

TINY = [*FAST, "trainer.epochs=1", "dataset.train_size=128", "model.channels=[4,8]"]
DATASETS = {"image": ["dataset=digits"], "sequence": ["dataset=mnist1d", "dataset.num_samples=600"]}

DROPOUT_CASES = [(name, model, kind) for name in DROPOUTS.names() for model in ("mlp", "cnn")
                 for kind in DATASETS if model == "cnn" or DROPOUTS.get(name).acts_on("mlp")]


@pytest.mark.parametrize("name,model,kind", DROPOUT_CASES, ids=["-".join(c) for c in DROPOUT_CASES])
def test_every_dropout_type_trains(make_cfg, tmp_path, name, model, kind):
    s = run(make_cfg(*TINY, *DATASETS[kind], f"model={model}", f"dropout={name}", "dropout.p=0.3",
                     "dropout.p_conv=0.2", f"results_dir={tmp_path}"))
    assert s["status"] == "completed" and len(read_metrics(Path(s["run_dir"]))) == 1


RECIPES = config_names("augment")
AUGMENT_CASES = [(recipe, kind) for recipe in RECIPES for kind in DATASETS]


@pytest.mark.parametrize("recipe,kind", AUGMENT_CASES, ids=["-".join(c) for c in AUGMENT_CASES])
def test_every_augmentation_recipe_trains_or_is_refused(make_cfg, tmp_path, recipe, kind):
    from regbench.core.errors import ConfigError

    cfg = make_cfg(*TINY, *DATASETS[kind], "model=cnn", f"augment={recipe}", f"results_dir={tmp_path}")
    if all(kind in KINDS[op] for op in cfg.augment.ops):
        s = run(cfg)
        assert s["status"] == "completed"
    else:  # an image-only op on 1-D data (or 1-D-only on images): the one-line error, nothing written
        with pytest.raises(ConfigError, match=f"does not apply to {kind} data"):
            run(cfg)
        assert not any(tmp_path.iterdir())


def test_every_op_has_a_recipe():
    assert set(AUGMENTS.names()) <= set(RECIPES)
