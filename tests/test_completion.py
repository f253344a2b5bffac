"""Shell completion after `regbench run`: the installed script, driven by a real bash, and the query
called exactly as that script calls it (COMP_LINE/COMP_POINT in the environment)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from regbench.cli.completion import install_script, strip_subcommand
from regbench.cli.usage import SUBCOMMANDS

BIN = Path(sys.executable).parent  # the venv's bin/, where the `regbench` console script lives
needs_bash = pytest.mark.skipif(shutil.which("bash") is None or not (BIN / "regbench").exists(),
                                reason="needs bash and the installed regbench executable")


def _env() -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def query(line: str, shell: str = "bash") -> str:
    """What the install script runs: `regbench run -sc query=<shell>` with the line in COMP_LINE."""
    env = {**_env(), "COMP_LINE": line, "COMP_POINT": str(len(line))}
    done = subprocess.run([str(BIN / "regbench"), "run", "-sc", f"query={shell}"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def complete_in_bash(*lines: str) -> list[list[str]]:
    """Load `regbench run -sc install=bash` into bash and run its completion function on each line,
    with the variables bash sets when Tab is pressed at the end of the line."""
    calls = "\n".join(
        f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; read -ra COMP_WORDS <<< \"$COMP_LINE\"; "
        'COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); [[ "$COMP_LINE" == *" " ]] && COMP_CWORD=${#COMP_WORDS[@]}; '
        'COMPREPLY=(); _regbench_completion; echo "${COMPREPLY[*]}"'
        for line in lines
    )
    script = f'eval "$(regbench run -sc install=bash)"\ncomplete -p regbench\n{calls}\n'
    done = subprocess.run(["bash", "-c", script], env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0].endswith("-F _regbench_completion regbench")  # registered for the command, not "regbench run"
    return [row.split() for row in out[1:]]


@needs_bash
def test_query_completes_groups_keys_and_options():
    assert query("regbench run dropout=").split() == [
        f"dropout={name}" for name in ("alpha", "dropblock", "dropconnect", "gaussian", "none", "original",
                                       "spatial", "standard")
    ]
    assert query("regbench run trainer.ep").split() == ["trainer.epochs="]
    assert query("regbench run -m model=cnn dropout=standard +exp").split() == ["+experiment="]
    assert "+experiment=mlp_dropout" in query("regbench run +experiment=").split()
    assert "ray" in [c.split("=")[1] for c in query("regbench run hydra/launcher=").split()]
    assert query("regbench run dropout=sp", shell="fish").splitlines() == ["dropout=spatial"]


@needs_bash
def test_bash_script_completes_after_run():
    sub, compare, every, group, partial, key, launcher, report = complete_in_bash(
        "regbench r", "regbench co", "regbench ", "regbench run dropout=", "regbench run seed=1 dropout=st",
        "regbench run trainer.ep", "regbench run hydra/launcher=r", "regbench report ")
    assert sub == ["run", "report"]
    assert compare == ["compare"]
    assert every == [*SUBCOMMANDS, "--help", "--version"]  # the dispatcher's own table: one list of subcommands
    # `=` is a word break in bash: the reply is what follows it.
    assert group == ["alpha", "dropblock", "dropconnect", "gaussian", "none", "original", "spatial", "standard"]
    assert partial == ["standard"]
    assert key == ["trainer.epochs="]
    assert launcher == ["ray"]  # hydra/launcher=r: regbench's Ray launcher (the old `regbench` name is gone)
    assert report == []  # no config query for `report`: bash falls back to file names (-o default)


def test_scripts_for_every_shell():
    bash = install_script("bash")
    assert install_script("zsh") == "autoload -U +X bashcompinit && bashcompinit\n" + bash
    fish = install_script("fish")
    assert "run -sc query=fish" in fish and "__fish_seen_subcommand_from run" in fish
    assert f"-a '{' '.join(SUBCOMMANDS)}'" in fish and "compare" in SUBCOMMANDS
    assert strip_subcommand("/venv/bin/regbench run -m dropout=") == "regbench -m dropout="
    assert strip_subcommand("regbench  run") == "regbench "


def test_bad_completion_request(cli):
    code, out, err = cli("run", "-sc", "install=tcsh")
    assert code == 2 and out == ""
    assert err.strip() == ("regbench: error: -sc 'install=tcsh' is not valid; valid: -sc install=SHELL, "
                           "-sc uninstall=SHELL or -sc query=SHELL with SHELL one of bash, zsh, fish")
