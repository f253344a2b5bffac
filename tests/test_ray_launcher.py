"""`hydra/launcher=ray` (regbench/sweeps/ray_launch.py): refusals before anything is written, and a real sweep
on a local Ray instance that gives the same runs as the basic launcher, resumes and reports."""

from __future__ import annotations

import json
import socket
import sys

import pytest

from regbench.sweeps import launchers

SWEEP = ["-m", "seed=0,1", "dropout=standard", "dropout.p=0.1,0.5", "trainer.epochs=2", "trainer.progress=false",
         "model.hidden=[32]", "sweep_name=s"]
RAY = ["hydra/launcher=ray", "hydra.launcher.local_cpus=2"]


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_refused(cli, tmp_path, *args: str) -> str:
    code, out, err = cli("run", *SWEEP, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regbench: error: "), err
    assert list(tmp_path.iterdir()) == [], "nothing may be written"
    return lines[0]


def test_missing_extra_names_it(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the extra
    line = _assert_refused(cli, tmp_path, *RAY)
    assert line == 'regbench: error: hydra/launcher=ray needs the optional extra: pip install "regbench[ray]"'


def test_unreachable_address_is_refused_quickly(cli, tmp_path):
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_closed_port()}"
    line = _assert_refused(cli, tmp_path, "hydra/launcher=ray", f"hydra.launcher.address={address}")
    assert f"hydra.launcher.address='{address}' is not reachable" in line and "ray start --head" in line
    line = _assert_refused(cli, tmp_path, "hydra/launcher=ray", f"hydra.launcher.address=ray://{address}")
    assert "is not reachable" in line


def test_ray_address_variable_is_the_default_address(cli, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{_closed_port()}")
    assert "RAY_ADDRESS='127.0.0.1:" in _assert_refused(cli, tmp_path, "hydra/launcher=ray")
    line = _assert_refused(cli, tmp_path, *RAY)
    assert "local_cpus=2 cannot take effect with RAY_ADDRESS=" in line


@pytest.mark.parametrize("args, expected", [
    (["hydra.launcher.address=auto", "hydra.launcher.local_cpus=2"], "local_cpus=2 cannot take effect with"),
    (["hydra.launcher.num_cpus=0"], "valid: num_cpus >= 0 and num_gpus >= 0, not both 0"),
    (["hydra.launcher.num_gpus=-1"], "valid: num_cpus >= 0 and num_gpus >= 0"),
    (["hydra.launcher.max_retries=-1"], "max_retries=-1 is not valid"),
    (["hydra.launcher.local_cpus=0"], "local_cpus=0 is not valid"),
])
def test_settings_that_cannot_work_are_refused(cli, tmp_path, args, expected):
    pytest.importorskip("ray")
    assert expected in _assert_refused(cli, tmp_path, "hydra/launcher=ray", *args)


def test_host_port_forms():
    from regbench.sweeps.ray_launch import host_port

    assert host_port("head:6379") == ("head", 6379)
    assert host_port("ray://10.0.0.2:10001") == ("10.0.0.2", 10001)
    assert host_port("[::1]:6379") == ("::1", 6379)
    assert host_port("auto") is None and host_port("local") is None


def test_threads_rule_under_ray():
    from hydra_plugins.regbench_plugins.ray_launcher import RayLauncher

    assert launchers.RAY == f"{RayLauncher.__module__}.{RayLauncher.__qualname__}"  # the rule sees this launcher
    assert launchers.job_threads({"_target_": launchers.RAY, "num_cpus": 2}, cores=16) == 2
    assert launchers.job_threads({"_target_": launchers.RAY, "num_cpus": 0.5}, cores=16) == 1


def _runs(sweep_dir):
    from test_launchers import _runs as runs

    return runs(sweep_dir)


@pytest.mark.slow  # ~25 s (two Ray starts); make test runs a Ray sweep from the shell (tests/e2e/test_launchers_e2e.py)
def test_ray_sweep_matches_basic_resumes_and_reports(cli, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    from test_launchers import _report_rows, assert_same_report_rows

    for name, extra in [("basic", ["hydra/launcher=basic"]), ("ray", RAY)]:
        (tmp_path / name).mkdir()
        monkeypatch.chdir(tmp_path / name)  # results_dir=runs is relative: the Ray workers must agree on it
        code, out, err = cli("run", *SWEEP, *extra)
        assert code == 0, err
        assert "sweep finished: 4 runs: 4 completed" in out
    basic, ray = _runs(tmp_path / "basic/runs/s"), _runs(tmp_path / "ray/runs/s")
    assert len(basic) == 4 and ray.keys() == basic.keys()  # same config hashes
    for h, run in basic.items():
        assert ray[h]["config"] == run["config"]
        assert ray[h]["metrics"] == run["metrics"]  # bit for bit, all but `seconds`: one thread on both sides
        assert ray[h]["summary"]["threads"] == run["summary"]["threads"] == 1
        assert ray[h]["summary"]["test"] == run["summary"]["test"]
    assert_same_report_rows(_report_rows(tmp_path / "ray/runs/s"), _report_rows(tmp_path / "basic/runs/s"), "ray")

    # The same sweep again through Ray: every cell is found in the run index and nothing is retrained.
    code, out, err = cli("run", *SWEEP, *RAY)
    assert code == 0 and "4 completed" in out, err
    assert len(list((tmp_path / "ray/runs/s").glob("*/summary.json"))) == 4
    index = [json.loads(line) for line in (tmp_path / "ray/runs/.regbench-index.jsonl").read_text().splitlines()]
    assert sum(e["status"] == "completed" for e in index) == 4



def test_resources_no_node_has_are_refused():
    from types import SimpleNamespace

    from regbench.sweeps.ray_launch import missing_resources

    ask = SimpleNamespace(num_cpus=1.0, num_gpus=8.0)
    assert missing_resources(ask, {"CPU": 2.0}) == ("hydra.launcher.num_gpus=8 but the Ray cluster has 0 GPUs; "
                                                    "valid: at most 0")
    assert missing_resources(SimpleNamespace(num_cpus=4.0, num_gpus=0.0), {"CPU": 2.0}).startswith(
        "hydra.launcher.num_cpus=4 but the Ray cluster has 2 CPUs")
    assert missing_resources(ask, {"CPU": 2.0, "GPU": 8.0}) is None


@pytest.mark.slow
def test_cells_per_job_gives_each_ray_task_a_stack(cli, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("run", *SWEEP, *RAY, "hydra.sweeper.cells_per_job=2")
    assert code == 0 and "sweep finished: 4 runs: 4 completed" in out, err
    runs = _runs(tmp_path / "runs/s")
    assert len(runs) == 4 and {r["summary"]["stack_cells"] for r in runs.values()} == {2}
