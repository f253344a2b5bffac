"""What the e2e tests share: a user's clean environment with the installed `regbench`, and a process runner."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent  # the virtualenv's bin/: its `regbench` is the installed console script


def clean_env() -> dict[str, str]:
    """What a user's fresh shell passes on, and no more: PATH with the virtualenv's bin/ first, HOME,
    PYTHONPATH only if this session has one (a worktree ahead of the editable install), the session's
    REGBENCH_CACHE_DIR (tests/conftest.py: mnist1d is generated once) and a non-interactive matplotlib."""
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
           "HOME": os.environ.get("HOME", str(Path.home())),
           "REGBENCH_CACHE_DIR": os.environ["REGBENCH_CACHE_DIR"],
           "MPLBACKEND": "Agg"}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def require_console_script() -> None:
    """Skip (with the reason) where the virtualenv has no `regbench` executable to run."""
    if shutil.which("regbench", path=clean_env()["PATH"]) != str(BIN / "regbench"):
        pytest.skip(f"needs the installed regbench console script in {BIN} (make test installs it)")


@dataclass
class Finished:
    code: int | None  # None: killed at the timeout
    output: str  # stdout and stderr, interleaved as on a terminal
    seconds: float
    cpu_seconds: float  # of the waited-for child processes


def run_process(argv: list[str], cwd: Path, timeout: float = 300) -> Finished:
    """argv in cwd with clean_env(), no stdin, in its own process group (killed whole at the timeout)."""
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        code = None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Finished(code, output, time.perf_counter() - start, cpu)


def shell(command: str, cwd: Path, timeout: float = 300, program: str = "bash") -> Finished:
    """A command line as a user types it, run by bash (or another shell) found on the clean PATH."""
    return run_process([shutil.which(program, path=clean_env()["PATH"]), "-c", command], cwd, timeout)


def tail(output: str, lines: int = 40) -> str:
    return "\n".join(output.rstrip("\n").splitlines()[-lines:])
