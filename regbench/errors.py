"""Errors that the CLI turns into one line on stderr and exit code 2."""


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
