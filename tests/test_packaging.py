"""An installed (non-editable) regbench works from any folder: configs and the sweeper ship in the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """Build the wheel and install it (without dependencies) into a private folder."""
    work = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(ROOT)],
                   check=True, capture_output=True)
    [wheel] = (work / "dist").glob("regbench-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(work / "site"), str(wheel)],
                   check=True, capture_output=True)
    return work / "site"


def _regbench(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed copy shadows the source checkout
    code = "import sys, regbench, regbench.cli as c; print('FROM', regbench.__file__); sys.exit(c.main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_wheel_runs_and_sweeps_from_another_folder(installed, tmp_path):
    single = _regbench(installed, tmp_path, "run", "trainer.epochs=1", "model.hidden=[16]")
    assert single.returncode == 0, single.stderr
    assert f"FROM {installed}" in single.stdout  # really the installed copy, not the checkout
    assert "results: runs/" in single.stdout
    sweep = _regbench(installed, tmp_path, "run", "-m", "seed=0,1", "trainer.epochs=1", "model.hidden=[16]",
                      "+experiment=mlp_dropout", "dropout.p=0.3")  # command line beats the experiment grid
    assert sweep.returncode == 0, sweep.stderr
    assert "sweep finished: 2 runs: 2 completed" in sweep.stdout
    listing = _regbench(installed, tmp_path, "list")
    assert "mlp_dropout" in listing.stdout and "digits" in listing.stdout


def test_wheel_declares_a_hydra_entry_point_for_every_plugin(installed):
    """Hydra 1.4 discovers plugins through `hydra.plugins` entry points: one per plugin class we ship."""
    import configparser
    import importlib
    import inspect

    from hydra.plugins.plugin import Plugin

    [info] = installed.glob("regbench-*.dist-info")
    parser = configparser.ConfigParser()
    parser.read(info / "entry_points.txt")
    declared = {value for _, value in parser.items("hydra.plugins")}
    shipped = set()
    for path in (ROOT / "hydra_plugins" / "regbench_plugins").glob("[!_]*.py"):
        module = importlib.import_module(f"hydra_plugins.regbench_plugins.{path.stem}")
        shipped |= {f"{module.__name__}:{name}" for name, obj in inspect.getmembers(module, inspect.isclass)
                    if issubclass(obj, Plugin) and obj.__module__ == module.__name__}
    assert shipped and declared == shipped


def _floor(requirement_prefix: str) -> str:
    """The version after `>=` in the build-system requirement that starts with requirement_prefix."""
    import tomllib

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    [req] = [r for r in requires if r.startswith(requirement_prefix)]
    return req.split(">=", 1)[1].strip()


@pytest.mark.slow
def test_wheel_builds_with_the_stated_setuptools_floor(tmp_path):
    """pyproject's build-system floor is real: the wheel builds with the floor's release series from PyPI
    (`>=77` -> the newest 77.x; the first 77.0 releases were yanked)."""
    floor = _floor("setuptools")
    series = f"setuptools>={floor},<{int(floor.split('.')[0]) + 1}"
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    py = tmp_path / "venv" / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", series], check=True, capture_output=True)
    built = subprocess.run([py, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "-w", str(tmp_path / "dist"), str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert len(list((tmp_path / "dist").glob("regbench-*.whl"))) == 1
