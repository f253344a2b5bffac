"""Errors that the CLI turns into one line on stderr: exit code 2 (bad input) or 1 (the machine)."""

import contextlib
import errno
import logging
import signal
import sys


class ConfigError(ValueError):
    """Bad user input: the message names the bad value and the valid choices.

    Raised before anything is written, so a run that fails with it leaves no folder.
    """

    exit_code = 2


class Abort(BaseException):
    """Carries a ConfigError out of a Hydra job to the CLI.

    Hydra catches `Exception` inside a job (and prints its own multi-line report); a
    BaseException passes through untouched, so the CLI can print the one line.
    """


class RunIncomplete(BaseException):
    """A single run ended diverged (or interrupted): the CLI exits 1 after its summary is written."""


class Interrupted(BaseException):
    """SIGTERM arrived during a run: stop at once, keep what was written (status: interrupted).

    A BaseException, like KeyboardInterrupt: Hydra's job wrapper and a sweep's per-cell error
    handling catch Exception, and an interrupted sweep must stop, not go on to the next cell.
    """


# Stop signals received by this command. A handler raises its exception where the signal lands; Python runs a
# signal handler between any two bytecodes, also inside a weakref callback or __del__ (importlib's module-lock
# callback, during every import), and an exception raised there is printed as "Exception ignored" and lost: the
# command would go on and exit 0. So each stop is also noted here (one per process: signals are a process's), and
# what commits a command's output (report staging) and the command's end call raise_if_stopped().
_stops: list[int] = []


def stop(signum: int, frame=None):
    """A signal handler: note the stop, then raise it (KeyboardInterrupt for SIGINT, as Python's own handler)."""
    _stops.append(signum)
    _raise(signum)


def raise_if_stopped() -> None:
    """Raise a stop noted earlier whose exception was lost (see _stops)."""
    if _stops:
        _raise(_stops[0])


@contextlib.contextmanager
def stops_of_this_command():
    """The stops noted inside belong to one command (the command line's, or one regbench.run / regbench.sweep call):
    forgotten when it starts and when it ends, so one process can run the next command after an interrupted one."""
    _stops.clear()
    try:
        yield
    finally:
        _stops.clear()


def _raise(signum: int):
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted(f"signal {signum}")


def quiet_lost_stops(unraisable) -> None:
    """sys.unraisablehook while a command runs: a stop lost where Python cannot raise (see _stops) is noted and
    raised later, so its "Exception ignored ... Traceback" is not printed; anything else is, as by default."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt | Interrupted):
        sys.__unraisablehook__(unraisable)


# errno values that mean the machine, not regbench or the config, stopped a write: no space,
# no quota, read-only file system, no permission. Anything else is a bug and keeps its traceback.
MACHINE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class MachineFailure(BaseException):
    """A write failed because of the machine (disk full, read-only folder, no permission).

    The message names the path and the cause; the CLI prints it as one line and exits 1.
    A BaseException like Abort: it must stop a sweep (the next cell would fail the same way)
    and pass through Hydra's job wrapper without Hydra's multi-line report.
    """

    exit_code = 1


def machine_failure(exc: BaseException) -> MachineFailure | None:
    """The MachineFailure for an OSError of the machine (searched along its causes), else None."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, MachineFailure):
            return seen
        if isinstance(seen, OSError) and seen.errno in MACHINE_ERRNOS:
            path = seen.filename if seen.filename is not None else "a file"
            return MachineFailure(f"cannot write {path}: {seen.strerror or seen} (errno {seen.errno})")
        seen = seen.__cause__ or seen.__context__
    return None


def failed_outcome(exc: Exception, what: str, detail: str) -> dict:
    """A sweep goes on past one broken run or stack: its outcome, with one error line in the log.
    A machine failure (disk full, read-only) is raised instead: the next one would fail the same way."""
    failure = machine_failure(exc)
    if failure is not None:
        raise failure from None
    logging.getLogger("regbench").error("%s failed (%s: %s): %s", what, type(exc).__name__, exc, detail)
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
