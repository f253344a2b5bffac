"""Output written whole or not at all: a report's or a comparison's files appear in their folder together."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path

from regbench.core.errors import ConfigError, MachineFailure, machine_failure, raise_if_stopped


@contextlib.contextmanager
def staging(out: Path, what: str = "the report"):
    """Write the report (or `what` else) into a hidden folder next to `out`, then rename each file into `out`.

    A full disk or a read-only folder therefore never leaves a 0-byte or half-written report.md
    or PNG in place of the previous one (rename is atomic and needs no space); the error is a
    MachineFailure naming the path and the cause (exit 1); any other failure to write there (`out` is a
    file, or below one) is the user's input (ConfigError, exit 2).
    """
    stage = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    try:
        stage.mkdir(parents=True)
        yield stage
        raise_if_stopped()  # a stop whose exception was lost mid-drawing (core/errors.py): not committed either
        out.mkdir(parents=True, exist_ok=True)
        for path in sorted(stage.iterdir()):
            os.replace(path, out / path.name)
    except OSError as exc:
        target = out if exc.filename is None or str(stage) in str(exc.filename) else exc.filename
        cause = f"{exc.strerror or exc} (errno {exc.errno})"
        if machine_failure(exc) is None:  # e.g. a file where the folder should be: the user's --out
            raise ConfigError(f"cannot write {what} to {out} ({target}: {cause}); valid: --out a folder, new or "
                              "existing, not a file or below one") from None
        raise MachineFailure(f"cannot write {what} to {target}: {cause}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
