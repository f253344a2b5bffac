"""A new regularizer is one file (plus at most one YAML): registered from a temporary module, it runs,
sweeps, is listed and reported, without a change to any file of the package."""

from __future__ import annotations

import csv
import json
import textwrap

import pytest

from regbench.regularizers import DROPOUTS, discovery

PLUGIN = textwrap.dedent('''
    """`uniform` dropout: multiply each unit by U(1 - sqrt(3)·s, 1 + sqrt(3)·s) noise, s^2 = p/(1-p)."""
    import torch

    from regbench.regularizers.base import ActivationDropoutSpec, FunctionalDropout, register


    def uniform_dropout(x, p, training):
        if not training or p == 0.0:
            return x
        half_width = (3 * p / (1 - p)) ** 0.5  # same mean (1) and variance as inverted dropout at rate p
        return x * (1 + half_width * (2 * torch.rand_like(x) - 1))


    class UniformDropout(FunctionalDropout):
        fn = staticmethod(uniform_dropout)


    @register
    class Uniform(ActivationDropoutSpec):
        name = "NAME"
        module = UniformDropout
''')
YAML = "# Uniform multiplicative noise with the variance of dropout at rate p.\nname: NAME\np: 0.3\n"
FAST = ["trainer.epochs=2", "trainer.progress=false", "model.hidden=[32]"]


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """One .py file found through REGBENCH_PLUGINS and one YAML in the user's --config-dir."""
    def make(name: str, source: str = PLUGIN):
        (tmp_path / f"{name}_dropout.py").write_text(source.replace("NAME", name))
        (tmp_path / "conf" / "dropout").mkdir(parents=True, exist_ok=True)
        (tmp_path / "conf" / "dropout" / f"{name}.yaml").write_text(YAML.replace("NAME", name))
        monkeypatch.setenv(discovery.ENV, str(tmp_path / f"{name}_dropout.py"))
        return ["--config-dir", str(tmp_path / "conf")]

    yield make
    for name in DROPOUTS.names():  # the test's types must not leak into other tests
        if name.startswith("uniform"):
            DROPOUTS.unregister(name)


def test_one_file_runs_sweeps_lists_and_reports(plugin, cli, tmp_path):
    conf = plugin("uniform")
    code, out, err = cli("run", *conf, "dropout=uniform", *FAST)
    assert code == 0, err
    [summary] = tmp_path.glob("runs/*/summary.json")
    assert json.loads(summary.read_text())["status"] == "completed"
    assert "dropout:\n  name: uniform\n  p: 0.3" in (summary.parent / "config.yaml").read_text()

    code, out, err = cli("run", "-m", *conf, "dropout=none,uniform", "dropout.p=0,0.4", "seed=0,1", *FAST,
                         "sweep_name=grid")
    assert code == 0, err
    assert "sweep finished: 8 runs: 8 completed" in out
    # Its `p == 0.0` branch cannot run on a per-cell rate under vmap: those cells train alone, said once.
    assert (out + err).count("of dropout=uniform train alone (their model does not run stacked") == 1
    sizes = {p.parent.name: json.loads(p.read_text())["stack_cells"]
             for p in (tmp_path / "runs/grid").glob("*/summary.json")}
    assert sorted(n for name, n in sizes.items() if "uniform" in name) == [1, 1, 1, 1]
    assert all(n > 1 for name, n in sizes.items() if "uniform" not in name)  # the built-in type still stacks
    with open(tmp_path / "runs/grid/report/groups.csv", newline="") as f:
        groups = list(csv.DictReader(f))
    assert [(g["dropout.name"], g["dropout.p"]) for g in groups] == [  # `none` first: it has no rate keys
        ("none", "0.0"), ("none", "0.4"), ("uniform", "0.0"), ("uniform", "0.4")]
    assert {g["n"] for g in groups} == {"2"}
    assert "uniform" in (tmp_path / "runs/grid/report/report.md").read_text()

    code, out, _ = cli("list")
    assert code == 0 and "uniform" in next(line for line in out.splitlines() if line.startswith("dropout:"))


# The same type without the branch, drawing its noise from torch's global generator or from the cell's stream.
GLOBAL_DRAW = PLUGIN.replace("if not training or p == 0.0:", "if not training:")
STREAM_DRAW = GLOBAL_DRAW.replace("torch.rand_like(x)", "streams.rand_like(x)").replace(
    "import torch\n", "from regbench.regularizers import streams\n")


@pytest.mark.parametrize(("source", "stacks"), [(GLOBAL_DRAW, False), (STREAM_DRAW, True)], ids=["global", "stream"])
def test_a_plugin_that_draws_from_the_global_generator_is_not_shared_by_a_stack(plugin, cli, tmp_path, source,
                                                                                 stacks):
    # torch's global generator cannot give each cell of a stack its own numbers: such a module fails the stack's
    # trial step and its cells train alone, said once. Through regularizers/streams.py it stacks. Either way each
    # cell has the numbers it has alone (the one-at-a-time launcher).
    name = "uniform_s" if stacks else "uniform_g"
    conf = plugin(name, source)
    grid = ["-m", *conf, f"dropout={name}", "dropout.p=0.2,0.4", "seed=0,1", *FAST, "report=false"]
    code, out, err = cli("run", *grid, "sweep_name=stacked")
    assert code == 0, err
    assert (f"4 cells of dropout={name} train alone (their model does not run stacked" in out + err) != stacks
    assert cli("run", *grid, "hydra/launcher=basic", "sweep_name=basic")[0] == 0
    runs = {name: {json.loads(p.read_text())["config_hash"]: p.parent
                   for p in (tmp_path / "runs" / name).glob("*/summary.json")} for name in ("stacked", "basic")}
    assert {json.loads((d / "summary.json").read_text())["stack_cells"] for d in runs["stacked"].values()} == (
        {4} if stacks else {1})
    assert runs["stacked"].keys() == runs["basic"].keys() and len(runs["basic"]) == 4
    for cell, lone in runs["basic"].items():
        with open(runs["stacked"][cell] / "metrics.csv") as fa, open(lone / "metrics.csv") as fb:
            rows = list(zip(csv.DictReader(fa), csv.DictReader(fb), strict=True))
        assert len(rows) == 2
        for a, b in rows:
            for k in ("train_loss", "val_loss", "val_acc"):
                assert float(a[k]) == pytest.approx(float(b[k]), abs=1e-5), (cell, k)


def test_the_new_type_is_checked_like_the_others(plugin, cli):
    conf = plugin("uniform_b")
    code, _, err = cli("run", *conf, "dropout=uniform_b", "dropout.p=1.5", *FAST)
    assert code == 2 and "dropout.p=1.5" in err and err.count("\n") == 1


def test_a_new_file_in_the_package_folder_is_found(tmp_path, monkeypatch):
    """A file dropped into regbench/regularizers/ registers without an import list to edit (simulated with
    an extra folder on the package's search path, so the real package stays untouched)."""
    import regbench.regularizers as package

    (tmp_path / "uniform_pkg.py").write_text(PLUGIN.replace("NAME", "uniform_pkg"))
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(tmp_path)])
    monkeypatch.setitem(discovery._state, "package", False)
    try:
        assert "uniform_pkg" in DROPOUTS
    finally:
        DROPOUTS.unregister("uniform_pkg")


def test_a_bad_plugin_entry_is_one_line(cli, monkeypatch, tmp_path):
    monkeypatch.setenv(discovery.ENV, str(tmp_path / "missing.py"))
    code, out, err = cli("run", *FAST)
    assert code == 2 and err.startswith(f"regbench: error: {discovery.ENV} entry ") and "no such file" in err
    monkeypatch.setenv(discovery.ENV, "no_such_module_here")
    code, out, err = cli("run", *FAST)
    assert code == 2 and "no module named 'no_such_module_here'" in err
    assert not (tmp_path / "runs").exists()
