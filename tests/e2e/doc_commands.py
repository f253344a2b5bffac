"""Collect the commands of README.md and docs/*.md and decide how each one is tested.

The rules themselves (what is collected, what is rewritten, the markers) are stated in the docstring of
tests/e2e/test_docs_commands.py, which runs what this module plans. This module is the mechanics:
reading fenced blocks, joining `\\` continuations, splitting off trailing comments, and turning each
command into a Plan: run it (rewritten or not, in which shell), or skip it with a reason.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL_LANGS = {"bash", "sh", "shell"}


def documents() -> list[Path]:
    """README.md, then docs/*.md in name order."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass(frozen=True)
class DocCommand:
    doc: str  # path relative to the checkout: README.md, docs/scaling_out.md
    line: int  # 1-based line of the command's first line (of the block's first line for python / file blocks)
    kind: str  # "shell" (```bash), "console" (```console, `$ ` prompt), "python" (a script), "file" (written)
    text: str  # the command as written (continuations joined, comment removed) or the block's source
    comment: str = ""  # the trailing comment, without `#`
    expected: tuple[str, ...] = ()  # console: the output lines the block shows under the command
    path: str = ""  # file blocks: where the block is written, relative to the document's folder

    @property
    def id(self) -> str:
        if self.kind == "python":
            what = "python block"
        elif self.kind == "file":
            what = f"file {self.path}"
        else:
            what = self.text if len(self.text) <= 90 else self.text[:87] + "..."
        return f"{self.doc}:{self.line} {what}"


# ---------------------------------------------------------------------------- parsing


def _scan(text: str):
    """Yield (index, char, quoted) over a shell line: quoted is True inside '...' or "..." (or escaped)."""
    quote, i = None, 0
    while i < len(text):
        c = text[i]
        if quote is None and c == "\\":
            yield i, c, True
            if i + 1 < len(text):
                yield i + 1, text[i + 1], True
            i += 2
            continue
        if quote == '"' and c == "\\" and i + 1 < len(text):
            yield i, c, True
            yield i + 1, text[i + 1], True
            i += 2
            continue
        if quote is None and c in "'\"":
            quote = c
            yield i, c, True
        elif quote is not None and c == quote:
            quote = None
            yield i, c, True
        else:
            yield i, c, quote is not None
        i += 1


def split_comment(line: str) -> tuple[str, str]:
    """`cmd 'a # b'   # note` -> ("cmd 'a # b'", "note"): a `#` starts a comment at a word's start, unquoted."""
    for i, c, quoted in _scan(line):
        if c == "#" and not quoted and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1:].strip()
    return line.rstrip(), ""


def words(command: str) -> list[str]:
    """The command's words as written (quotes kept): `a "b c" d=$PWD/x` -> ['a', '"b c"', 'd=$PWD/x']."""
    out, start = [], None
    for i, c, quoted in _scan(command):
        if c.isspace() and not quoted:
            if start is not None:
                out.append(command[start:i])
                start = None
        elif start is None:
            start = i
    if start is not None:
        out.append(command[start:])
    return out


def _logical_lines(lines: list[tuple[int, str]]):
    """Join `\\` continuations: yield (first line number, joined text) for each logical line."""
    pending, first = [], 0
    for number, text in lines:
        if not pending:
            first = number
        stripped = text.rstrip()
        if stripped.endswith("\\") and not stripped.endswith("\\\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped.strip())
        yield first, " ".join(p for p in pending if p)
        pending = []
    if pending:
        raise ValueError(f"line {first}: a `\\` continuation runs off the end of its block")


FILE_HEADER = re.compile(r"^\s*#\s*file:\s*(?P<path>\S+)\s*$")


def _fenced_blocks(text: str):
    """Yield (language, [(line number, line)]) for each ``` block, its fences left out."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^(\s*)(`{3,})\s*([\w+-]*)", lines[i])
        if not fence:
            i += 1
            continue
        ticks, lang, opened = fence.group(2), fence.group(3).lower(), i + 1
        body, i = [], i + 1
        while i < len(lines) and not lines[i].strip().startswith(ticks):
            body.append((i + 1, lines[i]))
            i += 1
        if i == len(lines):
            raise ValueError(f"line {opened}: a ``` block is never closed")
        i += 1
        yield lang, body


def parse(doc: str, text: str) -> list[DocCommand]:
    """Every command of one document, in document order."""
    found: list[DocCommand] = []
    for lang, body in _fenced_blocks(text):
        if not body:
            continue
        header = FILE_HEADER.match(body[0][1])
        if header:  # a file's contents, written for the commands after it
            source = "\n".join(line for _, line in body[1:]) + "\n"
            found.append(DocCommand(doc, body[0][0], "file", source, path=header.group("path")))
        elif lang == "python":
            found.append(DocCommand(doc, body[0][0], "python", "\n".join(line for _, line in body) + "\n"))
        elif lang in SHELL_LANGS:
            code = [(n, line) for n, line in body if line.strip() and not line.lstrip().startswith("#")]
            for number, logical in _logical_lines(code):
                command, comment = split_comment(logical)
                found.append(DocCommand(doc, number, "shell", command, comment))
        elif lang == "console":
            found.extend(_parse_console(doc, body))
    return found


def _parse_console(doc: str, body: list[tuple[int, str]]) -> list[DocCommand]:
    """`$ cmd` lines (with `\\` continuations) and the output lines shown under each."""
    out: list[DocCommand] = []
    i = 0
    while i < len(body):
        number, line = body[i]
        if not line.startswith("$ "):
            if line.strip():
                raise ValueError(f"{doc}:{number}: console output before any `$ ` command: {line!r}")
            i += 1
            continue
        physical = [(number, line[2:])]
        while physical[-1][1].rstrip().endswith("\\") and i + 1 < len(body):
            i += 1
            physical.append(body[i])
        [(first, logical)] = list(_logical_lines(physical))
        command, comment = split_comment(logical)
        i += 1
        shown = []
        while i < len(body) and not body[i][1].startswith("$ "):
            shown.append(body[i][1].rstrip())
            i += 1
        while shown and not shown[-1]:
            shown.pop()
        out.append(DocCommand(doc, first, "console", command, comment, tuple(shown)))
    return out


def collect() -> list[DocCommand]:
    commands = []
    for path in documents():
        commands.extend(parse(path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")))
    return commands


# ---------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Plan:
    """How one command is tested: `skip` (reason) or run `script` with `shell` in `where`."""

    skip: str = ""  # non-empty: not run, pytest.skip(skip)
    script: str = ""  # what the shell runs (the command as written, or rewritten)
    shell: str = "bash"  # "bash", "zsh", "fish", or "python" (script is a file's source)
    where: str = "doc"  # "doc": the document's folder; "checkout": the repository root
    exit_code: int = 0
    expected: tuple[str, ...] = ()  # console output lines to match
    notes: tuple[str, ...] = ()  # what was changed, for the failure message


# `needs WHAT: tested as OVERRIDES` / `needs WHAT: not tested`, a clause of the trailing comment
MARKER = re.compile(r"\bneeds (?P<what>[^:;]+?): (?:tested as (?P<tested_as>[^;]+?)|(?P<not>not tested))\s*(?:;|$)")
EXIT_CODE = re.compile(r"(?:^|;)\s*exit code (?P<code>\d+)\s*(?:;|$)")
# regbench run options after which nothing trains: nothing to shrink
NO_TRAINING = {"--help", "-h", "--hydra-help", "-sc", "--shell-completion", "--cfg", "-c", "--info", "-i", "--version"}
EPOCHS = "trainer.epochs"
SHRUNK_EPOCHS = "1"
AUTO_MAX_SEEDS = "3"  # seed=auto: the pilot of 3 seeds and its look (tests/test_auto_seeds.py: more looks)
MAX_SEEDS = 2  # a swept seed list keeps its first two: still a sweep over seeds (and named so)
# Launchers that start a process per job (~3-4 s of CPU each before any training): under them every swept
# list keeps its first MAX_VALUES values, so the grid still varies every key it varies in the docs.
PROCESS_PER_JOB = ("joblib", "submitit_local", "ray")
MAX_VALUES = 2

# Commands that are not `regbench`: each needs a rule here; a command none matches fails its test.
# (pattern on the command, what to do, why)
SHELL_RULES: list[tuple[str, str, str]] = [
    (r"^make (run|test|test-quick|test-all|lint|format|figures|reference|clean)$", "dry-run",
     "make would install into the checkout's .venv and run the suite this test belongs to (make test would "
     "recurse); `make -n` in the checkout checks that the target exists and what it would run"),
    (r"^(python -m )?pip install\b", "skip",
     "installs packages into the environment; the test environment already has every extra (make test installs them)"),
    (r"^python scripts/bench\.py\b", "skip",
     "a benchmark: even --quick times 16 whole processes one after another, too long for make test; "
     "tests/test_scripts.py runs `python scripts/bench.py --quick` (marked slow)"),
    (r"^source \S*\.venv/bin/activate$", "skip",
     "changes the calling shell only; the tests put the virtualenv's bin/ first on PATH, which is what it does"),
    (r"^time ", "untime", "the time taken is not checked; the command is run"),
    (r"^(mkdir|cp) ", "run", "cheap file set-up inside the document's folder"),
]


def _key(word: str) -> str | None:
    """The override key of a `key=value` word (`hydra/launcher`, `trainer.epochs`), else None."""
    try:
        [unquoted] = shlex.split(word)
    except ValueError:
        return None
    if unquoted.startswith("-") or "=" not in unquoted:
        return None
    return unquoted.split("=", 1)[0].lstrip("+~")


def _regbench_index(ws: list[str]) -> int | None:
    """Index of the `regbench` word after any leading VAR=value assignments, else None."""
    for i, w in enumerate(ws):
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w):
            continue
        return i if w == "regbench" or w.endswith("/regbench") else None
    return None


def _set(args: list[str], key: str, value: str) -> tuple[list[str], str]:
    """Set key=value in args: replace the word that sets key, or append it; and a note of the change."""
    for i, word in enumerate(args):
        if _key(word) == key:
            if word == f"{key}={value}":
                return args, ""
            return args[:i] + [f"{key}={value}"] + args[i + 1:], f"{word} -> {key}={value}"
    return [*args, f"{key}={value}"], f"+{key}={value}"


@cache
def launcher_keys(launcher: str) -> frozenset[str]:
    """The keys of hydra.launcher under hydra/launcher=<launcher>, as Hydra composes them."""
    from hydra import compose, initialize_config_module

    from regbench.rules.config import register_configs

    register_configs()  # the schema `config` extends (tests/conftest.py registers it too)
    with initialize_config_module(config_module="regbench.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    return frozenset(cfg.hydra.launcher.keys())


def shrink_regbench_run(command: str, substitutions: list[str] = ()) -> tuple[str, list[str]]:
    """The `regbench run` command as the test runs it, and notes of what changed (see the test module)."""
    ws = words(command)
    r = _regbench_index(ws)
    if r is None or len(ws) <= r + 1 or ws[r + 1] != "run":
        return command, []
    end = next((i for i in range(r + 2, len(ws)) if ws[i] in ("|", "||", "&&", ";", ">", ">>")), len(ws))
    head, args, tail = ws[:r + 2], ws[r + 2:end], ws[end:]
    if NO_TRAINING & set(args):
        return command, []
    notes = []
    for word in substitutions:  # a marker's local equivalent
        key = _key(word)
        if key is None:
            raise ValueError(f"`tested as` takes key=value overrides, got {word!r}")
        args, note = _set(args, key, word.split("=", 1)[1])
        notes.append(note)
        if key == "hydra/launcher":  # drop the settings the local launcher does not have (partition, ...)
            keep = launcher_keys(word.split("=", 1)[1])
            dropped = [a for a in args if (_key(a) or "").startswith("hydra.launcher.")
                       and _key(a).split(".", 2)[2] not in keep]
            args = [a for a in args if a not in dropped]
            notes.extend(f"-{a}" for a in dropped)
    args, note = _set(args, EPOCHS, SHRUNK_EPOCHS)
    notes.append(note)
    seeds = next((shlex.split(a)[0].split("=", 1)[1] for a in args if _key(a) == "seed"), "")
    if seeds == "auto":
        args, note = _set(args, "hydra.sweeper.max_seeds", AUTO_MAX_SEEDS)
        notes.append(note)
    elif re.fullmatch(r"\d+(,\d+)+", seeds) and seeds.count(",") >= MAX_SEEDS:  # still a sweep over seeds
        args, note = _set(args, "seed", ",".join(seeds.split(",")[:MAX_SEEDS]))
        notes.append(note)
    launcher = next((a.split("=", 1)[1] for a in args if _key(a) == "hydra/launcher"), "")
    if launcher in PROCESS_PER_JOB:  # each cell (or stack job) starts a process: keep every list to two values
        for word in list(args):
            value = word.split("=", 1)[1] if _key(word) else ""
            if re.fullmatch(r"[^\[\](){}'\"]+(,[^\[\](){}'\"]+){2,}", value):
                args, note = _set(args, _key(word), ",".join(value.split(",")[:MAX_VALUES]))
                notes.append(note)
    return " ".join(head + args + tail), [n for n in notes if n]


def plan(command: DocCommand) -> Plan:
    """How to test one command; raises ValueError for a command no rule covers (never dropped silently)."""
    if command.kind == "file":
        return Plan(script=command.text, shell="file")
    if command.kind == "python":
        return Plan(script=command.text, shell="python")
    marker = MARKER.search(command.comment)
    if marker and marker.group("not"):
        return Plan(skip=f"needs {marker.group('what')} (marked `# needs ...: not tested` in {command.doc})")
    code = EXIT_CODE.search(command.comment)
    exit_code = int(code.group("code")) if code else 0
    expected = command.expected
    completion = re.search(r"\bregbench run -sc install=(\w+)", command.text)
    if completion:  # `eval "$(regbench run -sc install=bash)"`: evaluated by the shell it is for
        shell = completion.group(1)
        if shutil.which(shell) is None:
            return Plan(skip=f"{shell} is not installed on this machine")
        if shell == "bash":  # eval "$(...)" exits 0 even when the inner command fails: check what it did
            return Plan(script=f"{command.text}\ncomplete -p regbench", shell="bash", exit_code=exit_code,
                        notes=("then `complete -p regbench`: the completion must be registered",))
        return Plan(script=command.text, shell=shell, exit_code=exit_code)
    if _regbench_index(words(command.text)) is not None:
        substitutions = marker.group("tested_as").split() if marker else []
        script, notes = shrink_regbench_run(command.text, substitutions)
        if substitutions and not notes:
            raise ValueError(f"{command.id}: `tested as` on a command that is not a training `regbench run`")
        return Plan(script=script, exit_code=exit_code, expected=expected, notes=tuple(notes))
    if marker:
        raise ValueError(f"{command.id}: `tested as` applies to `regbench run` commands only")
    for pattern, action, why in SHELL_RULES:
        if re.search(pattern, command.text):
            if action == "skip":
                return Plan(skip=why)
            if action == "dry-run":
                return Plan(script=command.text.replace("make ", "make -n ", 1), where="checkout",
                            exit_code=exit_code, notes=(f"dry run: {why}",))
            if action == "untime":
                return plan(DocCommand(command.doc, command.line, command.kind, command.text[len("time "):],
                                       command.comment, command.expected))
            return Plan(script=command.text, exit_code=exit_code, expected=expected)
    raise ValueError(f"{command.id}: no rule for this command; add one to SHELL_RULES in {Path(__file__).name} "
                     "(run it, or skip it with a reason)")


def output_matches(shown: tuple[str, ...], output: list[str]) -> bool:
    """Console output as shown: line for line, where a shown `...` line stands for any lines and `…`
    inside a line for any text."""
    def line_re(s: str) -> re.Pattern:
        return re.compile("^" + ".*".join(re.escape(part) for part in s.split("…")) + "$")

    def match(i: int, j: int) -> bool:
        if i == len(shown):
            return j == len(output)
        if shown[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(output) + 1))
        return j < len(output) and bool(line_re(shown[i]).match(output[j])) and match(i + 1, j + 1)

    return match(0, 0)
