"""Docs are tests: every command in README.md and docs/*.md runs as a user runs it, and must work.

What is collected (tests/e2e/doc_commands.py reads the fenced blocks):
- every command of a ```bash (or sh, shell) block: `\\` continuations joined, a trailing `# comment`
  split off, full-line comments skipped;
- every `$ ` command of a ```console block, with the lines the block shows under it: the command's
  output (stdout and stderr, interleaved as on a terminal) must be exactly those lines (a line `...`
  stands for any lines, a `…` inside a line for any text), and its exit code 0 or the one its comment
  states (`$ regbench run ...   # exit code 2`);
- every ```python block, run as a fresh `python` process of a file in the document's folder;
- a block whose first line is `# file: PATH` is not run but written to PATH, for the commands after it.

How they run: each in a fresh subprocess (`bash -c` with the command as typed: quotes, `$PWD`, globs,
pipes), with the INSTALLED `regbench` console script (the virtualenv's bin/ first on PATH), in one
temporary folder per document, in document order: a `regbench report runs/...` reads the sweep an
earlier command wrote (selecting one test with -k runs the earlier commands of its document first).
The environment is clean: PATH, HOME, PYTHONPATH if set (a worktree first on the path), one
REGBENCH_CACHE_DIR for the session (mnist1d is generated once) and MPLBACKEND=Agg. The sweep report is
on, as for a user. REGBENCH_E2E_TIMES=FILE appends each command's wall and CPU seconds to FILE.

Shrinking, the only rewrite: every `regbench run` that trains gets `trainer.epochs=1`, replacing the
command's own `trainer.epochs=N` (regbench refuses a key given twice) or added at its end; a swept seed
list keeps its first two seeds (`seed=0,1,2` -> `seed=0,1`: still a sweep over seeds, so the sweep folder
keeps its name), and a `seed=auto` sweep gets `hydra.sweeper.max_seeds=3` (its pilot of 3 seeds and its
look, not up to 20). Under a launcher that starts a process per job (joblib, submitit_local, ray) every
swept list keeps its first two values (`dropout.p=0,0.1,0.3,0.5` -> `dropout.p=0,0.1`). Lines with `--help`,
`-sc`, `--cfg` or `--info` train nothing and run as written.

Markers, in a command's trailing comment (readable to users too):
- `# needs SLURM: tested as hydra/launcher=submitit_local`: the test runs the local equivalent, each
  `key=value` after `tested as` replacing the command's word for that key (or added); a replaced
  `hydra/launcher` also drops the `hydra.launcher.*` settings the new launcher does not have
  (SLURM's partition, array_parallelism, ...);
- `# needs a Ray cluster and a GPU: not tested`: skipped, with that reason;
- `# exit code 2`: the exit code the command must end with.

Commands that are not regbench each need a rule (SHELL_RULES in doc_commands.py): make targets are
dry-run (`make -n TARGET` in the checkout: running them would install into .venv, and `make test` would
recurse into this suite); `pip install`, `source .venv/bin/activate` and `python scripts/bench.py`
are skipped with their reason; `mkdir` and `cp` run. The completion lines are evaluated by their shell
(bash: and the completion must then be registered; zsh or fish: skipped where not installed). A command
that no rule covers fails its test: every command is either run or skipped with a reason, never dropped.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from doc_commands import ROOT, DocCommand, Plan, collect, output_matches, plan
from e2e_env import clean_env, require_console_script, run_process, tail

pytestmark = pytest.mark.e2e

TIMEOUT_S = 300
COMMANDS = collect()


@dataclass
class Outcome:
    command: DocCommand
    plan: Plan | None
    code: int | None  # None: not run, or timed out
    output: str = ""
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of its waited-for child processes
    problem: str = ""  # why it failed ("" when it passed)


def execute(command: DocCommand, folder: Path, env: dict[str, str]) -> Outcome:
    """Run (or write) one command in folder and judge it against its plan."""
    try:
        p = plan(command)
    except ValueError as exc:
        return Outcome(command, None, None, problem=str(exc))
    if p.skip:
        return Outcome(command, p, None)
    if p.shell == "file":
        target = folder / command.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(p.script)
        return Outcome(command, p, 0)
    if p.shell == "python":
        script = folder / f"{Path(command.doc).stem}_line{command.line}.py"
        script.write_text(p.script)
        argv = [shutil.which("python", path=env["PATH"]), script.name]
    else:
        argv = [shutil.which(p.shell, path=env["PATH"]), "-c", p.script]
    done = run_process(argv, ROOT if p.where == "checkout" else folder, TIMEOUT_S)
    outcome = Outcome(command, p, done.code, done.output, done.seconds, done.cpu_seconds)
    if done.code is None:
        outcome.problem = f"timed out after {TIMEOUT_S} s"
    elif done.code != p.exit_code:
        outcome.problem = f"exited {done.code}, expected {p.exit_code}"
    elif p.expected and not output_matches(p.expected, done.output.rstrip("\n").splitlines()):
        outcome.problem = "its output is not the output the document shows"
    return outcome


class DocFolder:
    """One document's commands, run in order in one folder; each at most once."""

    def __init__(self, doc: str, folder: Path):
        self.doc, self.folder, self.env = doc, folder, clean_env()
        self.commands = [c for c in COMMANDS if c.doc == doc]
        self.outcomes: dict[DocCommand, Outcome] = {}

    def outcome(self, command: DocCommand) -> Outcome:
        for earlier in self.commands[: self.commands.index(command) + 1]:
            if earlier not in self.outcomes:
                self.outcomes[earlier] = execute(earlier, self.folder, self.env)
        return self.outcomes[command]

    def failed_before(self, command: DocCommand) -> list[Outcome]:
        return [self.outcomes[c] for c in self.commands[: self.commands.index(command)]
                if self.outcomes[c].problem]


def describe(outcome: Outcome, folder: DocFolder) -> str:
    c, p = outcome.command, outcome.plan
    lines = [f"{c.doc}:{c.line}: {outcome.problem}", f"  as written: {c.text if c.kind != 'python' else '(block)'}"]
    if p is not None and p.script and p.script != c.text and c.kind in ("shell", "console"):
        lines.append(f"  as run:     {p.script}   ({'; '.join(p.notes)})")
    lines.append(f"  in:         {ROOT if p is not None and p.where == 'checkout' else folder.folder}")
    earlier = folder.failed_before(c)
    if earlier:
        lines.append("  earlier commands of this document failed too, and this one may need what they make: "
                     + ", ".join(f"line {o.command.line} ({o.problem})" for o in earlier))
    if p is not None and p.expected:
        lines += ["  the document shows:", *(f"    {s}" for s in p.expected)]
    if outcome.output.strip():
        lines += ["  output (its end):", *(f"    {s}" for s in tail(outcome.output).splitlines())]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def doc_folders(tmp_path_factory):
    require_console_script()
    folders: dict[str, DocFolder] = {}

    def get(doc: str) -> DocFolder:
        if doc not in folders:
            folders[doc] = DocFolder(doc, tmp_path_factory.mktemp(Path(doc).stem, numbered=True))
        return folders[doc]

    yield get
    times = os.environ.get("REGBENCH_E2E_TIMES")
    if times:  # what each command cost, most expensive first
        rows = sorted((o for f in folders.values() for o in f.outcomes.values()), key=lambda o: -o.cpu_seconds)
        with open(times, "a") as f:
            for o in rows:
                status = "skip" if o.plan is not None and o.plan.skip else ("FAIL" if o.problem else "ok")
                f.write(f"{o.seconds:7.1f} s wall {o.cpu_seconds:7.1f} s cpu  {status:4}  {o.command.id}\n")


# Under pytest-xdist a document's commands stay on one worker, in order: tests/conftest.py groups them by this id.
@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_doc_command(command, doc_folders):
    folder = doc_folders(command.doc)
    outcome = folder.outcome(command)
    if outcome.plan is not None and outcome.plan.skip:
        pytest.skip(f"{command.doc}:{command.line}: {outcome.plan.skip}")
    if outcome.problem:
        pytest.fail(describe(outcome, folder), pytrace=False)


def test_every_document_has_commands():
    """The collector found the documents and their commands (a broken fence would hide them)."""
    docs = {c.doc for c in COMMANDS}
    assert docs == {p.relative_to(ROOT).as_posix() for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
                    if "```bash" in p.read_text(encoding="utf-8")}
    assert {c.kind for c in COMMANDS} >= {"shell", "console", "python"}
