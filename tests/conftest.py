"""Shared fixtures: compose configs with Hydra's Compose API, drive the CLI in-process."""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from regbench.rules.config import register_configs

register_configs()

# Generated datasets (MNIST-1D) are cached between processes in the user cache; the tests keep theirs in
# a folder of their own, shared by the session's subprocesses and removed at exit, never in ~/.cache.
_CACHE = tempfile.TemporaryDirectory(prefix="regbench-test-cache-")
os.environ["REGBENCH_CACHE_DIR"] = _CACHE.name

# Settings that make a run take a fraction of a second: tests check behaviour, not accuracy.
FAST = ["trainer.epochs=2", "trainer.progress=false", "model.hidden=[32]", "report=false"]


def fast(*overrides: str) -> list[str]:
    """FAST with `overrides` replacing its own values (the CLI refuses a key given twice)."""
    keys = {o.split("=", 1)[0] for o in overrides}
    return [o for o in FAST if o.split("=", 1)[0] not in keys] + list(overrides)


@pytest.fixture
def make_cfg():
    """make_cfg(*overrides) -> the composed, typed run config (as `regbench run` would build it)."""

    def _make(*overrides: str):
        with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _make


def without_overridden_fast(args: list[str]) -> list[str]:
    """Drop a FAST default that a later argument sets again: the CLI refuses a key given twice."""
    key = lambda a: a.split("=", 1)[0].lstrip("+~")  # noqa: E731
    return [a for i, a in enumerate(args) if a not in FAST or key(a) not in {key(b) for b in args[i + 1:]}]


# Modules whose tests run whole sweeps, kill processes or start the installed command: the integration tier
# (with every test that uses the `cli` fixture, a whole `regbench` command in this process). `make test-quick`
# leaves them out; `make test` runs them.
INTEGRATION_MODULES = ("test_resume", "test_machine_failures", "test_faults", "test_packaging", "test_ray_launcher",
                       "test_loggers", "test_notebook", "test_console", "test_auto_seeds", "test_api", "test_scripts",
                       "test_report_reproducible")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if "cli" in getattr(item, "fixturenames", ()) or module in INTEGRATION_MODULES:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """cli(*args) -> (exit code, stdout, stderr), run in-process in a fresh working directory."""
    from regbench.cli.commands import main

    monkeypatch.chdir(tmp_path)

    def _run(*args: str):
        # Hydra points the root logger's handlers at this test's captured streams: put them back, as a fresh
        # process would start, so that a later test does not log into a closed capture
        root = logging.getLogger()
        saved = (root.level, root.handlers[:])
        try:
            code = main(without_overridden_fast(list(args)))
        finally:
            root.setLevel(saved[0])
            root.handlers[:] = saved[1]
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def run_dirs(root: Path) -> list[Path]:
    """Every run folder (holding config.yaml) below root; hidden folders (MLflow's artifact copies) hold none.

    Safe to call while a sweep runs: os.walk skips a folder that vanishes mid-scan (the writability
    probe, a report's staging folder), where Path.rglob raises FileNotFoundError.
    """
    found = []
    for here, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if "config.yaml" in files:
            found.append(Path(here))
    return sorted(found)


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture
def no_md5(monkeypatch):
    """CIFAR and SVHN verify each file's md5 against the real download, which our tiny files cannot match.
    Replace only the md5 comparison: torchvision still checks that every expected file exists."""
    import torchvision.datasets.utils as tvu

    monkeypatch.setattr(tvu, "check_md5", lambda fpath, md5, **kwargs: True)
