"""The one declaration of key roles (regbench/rules/config.py) and the four places that read it.

Every schema key has exactly one role; config_hash, the sweep folder name, the report's
grouping and the stacked launcher's buckets each treat a key as its role says, checked by
changing every key of the schema one at a time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from regbench.cli.commands import default_sweep_name
from regbench.engine import plan
from regbench.report.table import flatten, varied_keys
from regbench.rules import config
from regbench.rules.config import NOT_COMPARED_KEYS, NOT_HASHED_KEYS, PER_CELL_KEYS, ROLES, config_hash, keys_with_role

RESULTS = Path(__file__).resolve().parent.parent / "results"


@pytest.fixture(scope="module")
def default_cfg():
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        return compose(config_name="config")


def schema_keys() -> list[str]:
    return sorted(config.key_roles())


def changed(value):
    """Another valid-looking value of the same kind (for a key's effect on the consumers)."""
    if value is None:
        return 1
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [*value, 1]
    raise TypeError(value)


def with_key(cfg, key: str):
    """An untyped copy of cfg with `key` changed (no schema: any value goes)."""
    d = OmegaConf.to_container(cfg, resolve=True)
    *parents, leaf = key.split(".")
    node = d
    for p in parents:
        node = node[p]
    node[leaf] = changed(node[leaf])
    return OmegaConf.create(d)


def test_every_schema_key_has_exactly_one_role(default_cfg):
    roles = config.key_roles()
    assert set(roles.values()) <= set(ROLES)
    by_role = [keys_with_role(r) for r in ROLES]
    assert sum(len(s) for s in by_role) == len(roles) == len(set().union(*by_role))  # a partition
    # the schema's keys are exactly the composed config's keys (no key outside the declaration)
    assert set(flatten(OmegaConf.to_container(default_cfg))) == set(roles)
    assert PER_CELL_KEYS == keys_with_role("per_cell") and NOT_HASHED_KEYS == keys_with_role("not_hashed")
    with pytest.raises(ValueError, match="not one of"):
        keys_with_role("hashed")


def test_the_roles_the_issue_names():
    assert {"dropout.p", "optim.lr", "optim.momentum", "optim.weight_decay", "seed", "reg.l1", "reg.max_norm",
            "reg.label_smoothing", "augment.mixup_alpha", "augment.cutmix_alpha"} <= PER_CELL_KEYS
    assert {"results_dir", "sweep_name", "name", "resume", "report", "margin", "trainer.progress"} <= NOT_HASHED_KEYS
    assert {"logger.mlflow.enabled", "logger.mlflow.tracking_uri", "logger.tensorboard.enabled"} <= NOT_HASHED_KEYS
    # process-wide settings that change the numbers: hashed, shared by a stack, not a configuration difference
    for key in ("trainer.threads", "trainer.device", "trainer.deterministic"):
        assert config.key_roles()[key] == "structural" and key in NOT_COMPARED_KEYS


@pytest.mark.parametrize("key", schema_keys())
def test_config_hash_follows_the_declaration(default_cfg, key):
    moved = config_hash(with_key(default_cfg, key)) != config_hash(default_cfg)
    assert moved == (key not in NOT_HASHED_KEYS)


@pytest.mark.parametrize("key", schema_keys())
def test_sweep_folder_name_follows_the_declaration(default_cfg, key):
    grid = ["dropout.p=0,0.5", "seed=0,1"]
    value = changed(flatten(OmegaConf.to_container(default_cfg))[key])
    override = f"{key}={json.dumps(value) if not isinstance(value, str) else value}"
    same = default_sweep_name([*grid, override]) == default_sweep_name(grid)
    assert same == (key in NOT_HASHED_KEYS)


@pytest.mark.parametrize("key", schema_keys())
def test_report_groups_follow_the_declaration(default_cfg, key):
    rows = [flatten(OmegaConf.to_container(default_cfg)), flatten(OmegaConf.to_container(with_key(default_cfg, key)))]
    table = pd.DataFrame.from_records([{k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()}
                                       for r in rows])
    assert varied_keys(table, list(rows[0])) == ([] if key in NOT_COMPARED_KEYS else [key])


@pytest.mark.parametrize("key", schema_keys())
def test_stacks_follow_the_declaration(default_cfg, key):
    same = plan.stack_key(with_key(default_cfg, key)) == plan.stack_key(default_cfg)
    # one stack: every per-cell key of the schema (all of them stack), the engine's own per-cell
    # bookkeeping (a cell's augmentation object, its end of run), keys that say where results go;
    # every other key splits the stack
    per_cell = set(plan.PER_CELL_VALUES)
    assert PER_CELL_KEYS <= per_cell
    shared = NOT_HASHED_KEYS | per_cell
    assert same == (key in shared or key.split(".")[0] in shared)


def committed_runs() -> list[Path]:
    return sorted(p.parent for p in RESULTS.glob("*/*/summary.json"))


@pytest.mark.skipif(not committed_runs(), reason="no committed results in this checkout")
def test_committed_results_keep_their_config_hash():
    """The hashed set did not change: every committed run folder still resumes (same hash)."""
    runs = committed_runs()
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        cfg = OmegaConf.load(run / "config.yaml")
        assert config_hash(cfg) == summary["config_hash"], run
    assert len(runs) > 100
