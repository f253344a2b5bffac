"""`regbench run | report | list`: a thin dispatcher in front of Hydra.

Hydra's @hydra.main parses all of argv, so `run` is stripped here before Hydra sees the
line; `-m/--multirun` is moved to the front so it may stand anywhere; a multirun gets a
sweep folder name; and every user error (ours or Hydra's) becomes one line on stderr and
exit code 2 instead of a traceback.
"""

from __future__ import annotations

import contextlib
import difflib
import gc
import hashlib
import itertools
import os
import re
import shlex
import signal
import sys

from regbench.cli.completion import COMPLETION_FLAGS
from regbench.cli.hydra_errors import (
    config_dirs,
    hydra_error_message,
    launcher_error_message,
    override_parse_message,
    yaml_error_message,
)
from regbench.cli.usage import SUBCOMMANDS, USAGE
from regbench.core.errors import (
    Abort,
    ConfigError,
    Interrupted,
    MachineFailure,
    RunIncomplete,
    machine_failure,
    quiet_lost_stops,
    raise_if_stopped,
    stop,
    stops_of_this_command,
)
from regbench.core.version import __version__

MULTIRUN_FLAGS = ("-m", "--multirun")
# `regbench run -v`: Hydra's own log configs instead of regbench's (conf/hydra/job_logging/regbench.yaml),
# i.e. Hydra's launch lines, each cell's start line and every library's INFO lines.
VERBOSE_FLAGS = ("-v", "--verbose")
VERBOSE_OVERRIDES = ("hydra/job_logging=stdout", "hydra/hydra_logging=default")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with sigterm_interrupts():
            return dispatch(argv)
    except ConfigError as exc:
        return _fail(str(exc))
    except BrokenPipeError:  # `regbench ... | head`: the reader left; not an error of ours (before OSError)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return 0
    except (MachineFailure, OSError) as exc:
        failure = machine_failure(exc)
        if failure is None:
            raise
        return _fail(str(failure), code=1)
    except (KeyboardInterrupt, Interrupted) as exc:
        training = bool(argv) and argv[0] == "run"  # report / compare write their files whole, or not at all
        print("regbench: interrupted; " + ("finished runs are complete, rerun the command to resume" if training
              else "nothing half-written, rerun the command to write its output"), file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 143


@contextlib.contextmanager
def sigterm_interrupts():
    """SIGTERM raises Interrupted wherever the command is, as Ctrl-C raises KeyboardInterrupt: the clean-ups run (a
    report's staging folder, a sweep's multirun.yaml put back, claims released) and the one line is printed, where
    the signal's default action left them and printed nothing. Both are noted as well (core/errors.stop), so a stop
    whose exception Python lost (raised inside a weakref callback) still ends the command, without the lost
    exception's traceback. The training loop sets its own SIGTERM handler inside (engine/setup.sigterm_raises /
    sigterm_deferred) and puts this one back."""
    # SIGINT only where Python's own handler is in place (a background job's SIG_IGN stays)
    signums = [signal.SIGTERM] + [signal.SIGINT] * (signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    try:
        previous = {signum: signal.signal(signum, stop) for signum in signums}
    except ValueError:  # not in the main thread (main() called from another thread): leave signals alone
        yield
        return
    hook, sys.unraisablehook = sys.unraisablehook, quiet_lost_stops
    try:
        with stops_of_this_command():
            yield
            raise_if_stopped()
    finally:
        sys.unraisablehook = hook
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"regbench {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        raise ConfigError(f"unknown command {command!r}; valid choices: {', '.join(SUBCOMMANDS)}")
    handlers = {"run": run_command, "report": report_command, "compare": compare_command, "list": list_command}
    return handlers[command](rest)


def console_main() -> int:
    """The `regbench` program (pyproject's console script, `python -m regbench.cli`): main(), and then an exit
    without the interpreter's last garbage collection. That collection walks every object torch, Hydra
    and the rest allocated (~0.6 s of a 2-core machine's exit, each run); gc.freeze() moves them out
    of its reach. What must be flushed or closed is closed by then (the run's files, its loggers); refcounting
    still frees the rest. Tests call main() itself: a test process keeps its collector."""
    code = main()
    gc.freeze()
    return code


def _fail(message: str, code: int = 2) -> int:
    print(f"regbench: error: {' '.join(message.split())}", file=sys.stderr)
    return code


# ---------------------------------------------------------------------------- run


# The options of `regbench run`, declared once: Hydra 1.3's own (hydra/_internal/utils.py get_args_parser), by what
# follows them, and regbench's -m/-v (above) and -sc (cli/completion.py). check_options refuses anything else that
# starts with `-` before Hydra sees it (its argparse would print a usage block of nine lines).
CFG_FLAGS = ("--cfg", "-c")  # print the config instead of running: job, hydra or all
CFG_CHOICES = ("job", "hydra", "all")
VALUE_FLAGS = ("--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp", *CFG_FLAGS,
               "--package", "-p")  # take a value
INFO_FLAGS = ("--info", "-i")  # an optional topic, Hydra's default `all`
INFO_TOPICS = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")
HELP_FLAGS = ("--help", "-h", "--hydra-help", "--version")  # print, run nothing
SWITCH_FLAGS = ("--resolve", "--run", "-r")  # take no value
OPTIONS = (*MULTIRUN_FLAGS, *VERBOSE_FLAGS, *HELP_FLAGS, *VALUE_FLAGS, *INFO_FLAGS, *SWITCH_FLAGS, *COMPLETION_FLAGS)
# Hydra's options that print instead of running; Hydra refuses them next to --multirun.
SHOW_FLAGS = (*CFG_FLAGS, *INFO_FLAGS)
# Hydra's option that regbench refuses, with why: it reruns from the config.pickle of Hydra's output folder, which
# regbench never writes (hydra.output_subdir is null), and ignores every other argument of the line.
REFUSED_FLAGS = {"--experimental-rerun": "reruns from Hydra's config.pickle, which regbench does not write; valid: "
                                         "the run's own command (\"command\" in its summary.json)"}
_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")  # argparse's rule: such an argument is a value, not an option


def is_option(arg: str) -> bool:
    return arg.startswith("-") and not _NEGATIVE_NUMBER.match(arg)


def check_options(args: list[str]) -> list[str]:
    """`args` with every `--option=value` written as `--option value` (argparse takes both; the rest of this module
    reads the second); ConfigError (one line) for an option neither Hydra nor regbench has, an option whose value
    is missing or not one of its choices, and a value given to an option that takes none."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if not is_option(arg):
            out.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in REFUSED_FLAGS:
            raise ConfigError(f"{name} {REFUSED_FLAGS[name]}")
        if name not in OPTIONS:
            raise ConfigError(unknown_option_message(name))
        if eq and name not in (*VALUE_FLAGS, *INFO_FLAGS):
            raise ConfigError(f"{name} takes no value, got {arg!r}; valid: {name} alone")
        if name in VALUE_FLAGS and not eq:
            if i == len(args) or is_option(args[i]):
                choices = "|".join(CFG_CHOICES) if name in CFG_FLAGS else "VALUE"
                raise ConfigError(f"{name} needs a value; valid: {name} {choices}")
            value, i = args[i], i + 1
        if name in CFG_FLAGS and value not in CFG_CHOICES:
            raise ConfigError(f"{name} {value!r} is not valid; valid choices: {', '.join(CFG_CHOICES)}")
        if name in INFO_FLAGS and eq and value not in INFO_TOPICS:
            raise ConfigError(f"{name} {value!r} is not valid; valid topics: {', '.join(INFO_TOPICS)}")
        out += [name, value] if name in VALUE_FLAGS or eq else [name]
    return out


def unknown_option_message(name: str) -> str:
    """Names the option, what it may have meant (a long option it abbreviates, as argparse would have read it, or a
    near spelling) and every valid one."""
    long = [o for o in OPTIONS if o.startswith("--")]
    close = [o for o in long if o.startswith(name)] or difflib.get_close_matches(name, long, n=1, cutoff=0.7)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    return (f"unknown option {name!r}; {hint}valid options: {', '.join(OPTIONS)} (and KEY=VALUE overrides: "
            "regbench run --help)")


def split_flags(args: list[str]) -> tuple[list[str], list[str]]:
    """(Hydra's options with their values, the overrides), each in the order given.

    Hydra parses the overrides as one positional list, so an option between two overrides
    (`+experiment=x --config-dir DIR seed=1`) leaves the second part unparsed ("unrecognized
    arguments"); the run command therefore hands Hydra the options first, then the overrides."""
    flags: list[str] = []
    overrides: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in VALUE_FLAGS and i + 1 < len(args):
            flags += args[i:i + 2]
            i += 2
            continue
        if arg in INFO_FLAGS:  # the topic written out (Hydra's default: all): argparse takes any next word for it
            given = i + 1 < len(args) and args[i + 1] in INFO_TOPICS
            flags += [arg, args[i + 1] if given else INFO_TOPICS[0]]
            i += 2 if given else 1
            continue
        (flags if is_option(arg) else overrides).append(arg)
        i += 1
    return flags, overrides


def hydra_args(args: list[str]) -> list[str]:
    """Hydra's options first, then -m/--multirun (wherever it stood) and, for a multirun, its sweep folder
    name, then the overrides."""
    multirun = any(a in MULTIRUN_FLAGS for a in args)
    flags, overrides = split_flags([a for a in args if a not in MULTIRUN_FLAGS])
    refuse_bad_overrides(overrides)
    from regbench.sweeps import auto_seeds
    typed = [*flags, *overrides]
    overrides = auto_seeds.rewrite(overrides, multirun)  # seed=auto -> the sweeper's flag
    if not multirun and not any(f in (*HELP_FLAGS, *SHOW_FLAGS) for f in flags):  # printing a config runs nothing
        refuse_sweep_only(overrides)
    if multirun:
        # The name comes from the line as typed (seed=auto included): a rerun finds the same folder.
        named = [] if any(a.startswith("sweep_name=") for a in overrides) else [
            f"sweep_name={default_sweep_name(typed)}"]
        return [*flags, "--multirun", *named, *overrides]
    return [*flags, *overrides]


# Hydra's keys for where it writes and whether it changes directory: regbench's conf/config.yaml sets them so that
# Hydra writes nothing but a sweep's multirun.yaml, in <results_dir>/<sweep_name>; another value would write outside
# results_dir (hydra.run.dir, hydra.output_subdir) or split a sweep's files from its runs (hydra.sweep.dir).
PLACED_BY_REGBENCH = tuple(f"{key}=" for key in ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir",
                                                 "hydra.output_subdir", "hydra.job.chdir"))


# What acts only in a sweep (-m), by key (a config group's choice too: hydra/launcher=basic), with why and what does
# the same for runs already written: Hydra starts its sweeper and launcher only for a multirun (a single run is one
# call of the task function), and report_format and margin are for a sweep's own report (sweeps/callbacks.py
# SweepReport; a later `regbench report` takes --format and --margin). `report` itself is one too, but stays
# accepted in a single run (it only turns off what a single run does not write): the tests' fast settings pass
# report=false to single runs and sweeps alike (tests/conftest.py FAST).
SWEEP_ONLY = {
    "hydra.sweeper": ("Hydra's sweeper runs only with -m", None),
    "hydra.launcher": ("a launcher starts the jobs of a sweep; a single run trains in this process", None),
    "margin": ("a single run writes no report", "regbench report PATH --margin ..."),
    "report_format": ("a single run writes no report", "regbench report PATH --format ..."),
}


def refuse_sweep_only(overrides: list[str]) -> None:
    """A single run's overrides that only act in a sweep (SWEEP_ONLY), or sweep several values: refused, not
    ignored (Hydra's own word for the second is "Ambiguous value", on several lines)."""
    for arg in overrides:
        if _is_sweep(arg):
            from regbench.rules.config import list_example

            key, value = arg.split("=", 1)
            one_list = f", or one list: {key}=[{value}]" if list_example(key.lstrip("+")) and "(" not in value else ""
            raise ConfigError(f"{arg} lists several values, which only a sweep runs; valid: regbench run -m <grid> "
                              f"{arg}, or one value{one_list}")
        key = arg.lstrip("+~").split("=", 1)[0].replace("/", ".")
        root = next((k for k in SWEEP_ONLY if key == k or key.startswith(f"{k}.")), None)
        if root is not None:
            why, later = SWEEP_ONLY[root]
            raise ConfigError(f"{arg} only acts in a sweep ({why}); valid: regbench run -m <grid> {arg}"
                              + (f", or {later} for runs already written" if later else ""))


def refuse_bad_overrides(overrides: list[str]) -> None:
    """Overrides refused before Hydra sees them. A key given twice (`dropout.p=0.1,0.2 dropout.p=0.3`: Hydra lets
    the last one win silently); a `sweep_name` that is not one folder or an empty `results_dir` (Hydra would write
    multirun.yaml first, for `results_dir=` at the file system's root); Hydra's own placement keys;
    `~key` (Hydra deletes the key, and every key of the schema must have a value), a continuous
    `interval(a,b)` sweep (a grid needs values: regbench's sweeper has no sampler), and what Hydra cannot parse
    or would fail on with a traceback (`=3`: no key; `range(0,3,0)`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    seen: dict[str, str] = {}
    for arg in overrides:
        if arg.startswith("~"):
            key = arg[1:].split("=", 1)[0]
            raise ConfigError(f"{arg} would delete the key {key}; valid: set it instead ({key}=VALUE), every key has "
                              "a default (regbench run --help)")
        if arg.startswith("sweep_name="):
            from regbench.rules.config import check_sweep_name

            check_sweep_name(arg.split("=", 1)[1].strip("'\""))
        if arg.startswith("results_dir="):
            from regbench.rules.config import check_results_dir

            check_results_dir(arg.split("=", 1)[1].strip("'\""))
        if arg.lstrip("+").startswith("hydra.mode="):  # MULTIRUN: a sweep without its folder (<results_dir>/None)
            raise ConfigError(f"{arg} is set by regbench from -m; valid: regbench run -m <grid> for a sweep, "
                              "without -m for one run")
        if arg.lstrip("+").startswith(PLACED_BY_REGBENCH):
            key = arg.lstrip("+").split("=", 1)[0]
            raise ConfigError(f"{key} is set by regbench, which writes every file under results_dir itself (a sweep in "
                              "<results_dir>/<sweep_name>); valid: results_dir=DIR and sweep_name=NAME")
        try:
            [parsed] = parser.parse_overrides([arg])  # (parse_override raises without naming the override)
        except OverrideParseException as exc:
            raise ConfigError(override_parse_message(exc)) from None
        if not parsed.key_or_group:
            raise ConfigError(f"{arg!r} names no key; valid: key=value (regbench run --help lists the keys)")
        if parsed.is_sweep_override() and not parsed.is_discrete_sweep():
            raise ConfigError(f"{arg} is a continuous range; valid in a grid: values (key=0,0.1,0.5), "
                              "range(start,stop,step) or choice(a,b)")
        if parsed.value_type == ValueType.RANGE_SWEEP and parsed.value().step == 0:
            raise ConfigError(f"{arg} has a step of 0; valid: range(start,stop) or range(start,stop,step) with a step "
                              "other than 0")
        if "=" not in arg:
            continue
        key = arg.split("=", 1)[0].lstrip("+~")
        if key in seen:
            raise ConfigError(f"{key} is given twice on the command line ({seen[key]} and {arg}); valid: each key "
                              f"once, a sweep lists its values with commas ({key}=a,b,c)")
        seen[key] = arg


def _not_in_sweep_name() -> tuple[str, ...]:
    """Overrides that say how or where a sweep runs, not what it computes (Hydra's own and the
    schema's NOT_HASHED_KEYS): they do not change its folder, so the same grid resumes in place
    whichever launcher or reporting option the rerun uses."""
    from regbench.rules.config import NOT_HASHED_KEYS, key_roles

    # a config group whose every key is not hashed (logger=[csv,mlflow]) is chosen as `group=`
    groups = {key.split(".")[0] for key in NOT_HASHED_KEYS if "." in key}
    whole = [g for g in sorted(groups) if all(k in NOT_HASHED_KEYS for k in key_roles() if k.startswith(f"{g}."))]
    return ("hydra.", "hydra/", *(f"{key}=" for key in sorted(NOT_HASHED_KEYS)), *(f"{g}=" for g in whole))


def default_sweep_name(args: list[str]) -> str:
    """The same grid gives the same sweep folder, so rerunning a sweep resumes it in place.

    e.g. `dropout=standard dropout.p=0,0.5 seed=0,1` -> sweep-standard-dropout.p+seed-<hash>, and
    `+experiment=cnn_spatialdrop` -> sweep-cnn_spatialdrop-<hash>: the experiment, the config groups
    chosen (so sweeps that differ in the dropout type differ in more than the hash), then the swept
    keys. The hash is over the sorted overrides (order does not matter) without the launcher /
    reporting ones.
    """
    from regbench.rules.config import group_names

    skip = _not_in_sweep_name()
    overrides = sorted(a for a in args if "=" in a and not a.startswith("-") and not a.startswith(skip))
    flags = [a for a in args if "=" not in a or a.startswith("-")]  # --config-dir DIR ... changes the grid
    pairs = [(a.split("=", 1)[0].lstrip("+~"), a.split("=", 1)[1]) for a in overrides]
    experiments = [value for key, value in pairs if key == "experiment"]
    sweeps = [_is_sweep(a) for a in overrides]
    groups = [value for (key, value), sw in zip(pairs, sweeps, strict=True) if key in group_names() and not sw]
    swept = ["+".join(key for (key, _), sw in zip(pairs, sweeps, strict=True) if sw)]
    digest = hashlib.sha1("\0".join(flags + overrides).encode()).hexdigest()[:8]
    name = "-".join(filter(None, experiments + groups + swept))[:80].replace("/", "_") or "grid"
    return f"sweep-{name}-{digest}"


def _is_sweep(override: str) -> bool:
    """Does this override sweep (`p=0,0.5`, `range(..)`, `choice(..)`)? Hydra's own parser decides, so a
    list value (`model.hidden=[100,100]`) is one value; a line it cannot parse is left for Hydra to refuse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(override).is_sweep_override()
    except Exception:  # noqa: BLE001 - Hydra reports the bad override itself, with its message
        return "," in override.split("=", 1)[1]


def run_command(args: list[str]) -> int:
    """`regbench run ARGS`: 0 when every run completed, 1 otherwise; a user error raises ConfigError."""
    from regbench.cli import completion
    args = check_options(args)
    request = completion.parse(args)  # -sc install|uninstall|query=bash|zsh|fish
    if request is not None:
        if completion.handle(*request):
            return 0
        args = ["-sc", f"query={'bash' if request[1] == 'zsh' else request[1]}"]
    if any(a in VERBOSE_FLAGS for a in args):
        args = [*(a for a in args if a not in VERBOSE_FLAGS), *VERBOSE_OVERRIDES]
    if any(a in MULTIRUN_FLAGS for a in args) and any(a in SHOW_FLAGS for a in args):
        return show_cells(args)
    return run_hydra(hydra_args(args))


def show_cells(args: list[str]) -> int:
    """`regbench run -m <grid> --cfg job` (or --info): what each cell of the grid would run, one after another
    (--info: once, for the first cell), each under a `# cell i/N: ...` line. Hydra itself refuses --cfg and
    --info with --multirun, and composes a printed config as a single run, where a swept value is ambiguous."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    flags, overrides = split_flags([a for a in args if a not in MULTIRUN_FLAGS])
    refuse_bad_overrides(overrides)
    parsed = OverridesParser.create().parse_overrides(overrides)
    choices: list[list[str]] = []
    for override, text in zip(parsed, overrides, strict=True):
        if not override.is_sweep_override():
            choices.append([text])
        else:  # discrete: refuse_bad_overrides refused interval()
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
    cells = list(itertools.product(*choices))
    total = len(cells)
    if any(f in INFO_FLAGS for f in flags):
        cells = cells[:1]
    swept = [i for i, c in enumerate(choices) if len(c) > 1]
    for n, cell in enumerate(cells, 1):
        print(f"# cell {n}/{total}: {' '.join(cell[i] for i in swept) or '(single cell)'}", flush=True)
        code = run_hydra(hydra_args([*flags, *cell]))
        if code:
            return code
    return 0


def run_hydra(argv: list[str]) -> int:
    """Hydra's application on `argv` (options, then overrides), its errors as ConfigError / MachineFailure.
    0 when every run of the command completed (sweeps/outcome.py holds what they ended as), else 1."""
    from regbench.sweeps import outcome
    from regbench.sweeps.hydra_app import entry

    saved = sys.argv
    sys.argv = ["regbench run", *argv]
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us, to print them as one line
    with outcome.expect() as result:
        try:
            entry()
        except SystemExit as exc:  # Hydra's own --help / --cfg exit through here
            return exc.code if isinstance(exc.code, int) else 0
        except RunIncomplete:
            return 1
        except Abort as exc:
            raise ConfigError(str(exc)) from None
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - Hydra composition errors -> one line
            failure = machine_failure(exc)  # e.g. multirun.yaml in a read-only sweep folder
            if failure is not None:
                raise failure from None
            message = (hydra_error_message(exc, config_dirs(argv)) or launcher_error_message(exc)
                       or yaml_error_message(exc))
            if message is None:
                raise
            raise ConfigError(message) from None
        finally:
            sys.argv = saved
    return 1 if result.incomplete else 0


# ---------------------------------------------------------------------------- report, list


def report_command(args: list[str]) -> int:
    from regbench.cli.report_commands import report_main

    return report_main(args)


def compare_command(args: list[str]) -> int:
    from regbench.cli.report_commands import compare_main

    return compare_main(args)


def list_command(args: list[str]) -> int:
    from regbench.cli.catalog import catalog

    if args:
        return _fail(f"`regbench list` takes no arguments, got {shlex.join(args)!r}; valid: regbench list")
    for section, names in catalog().items():
        print(f"{section + ':':<16}{', '.join(names)}")
    return 0
