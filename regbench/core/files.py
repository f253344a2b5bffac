"""Atomic file writes: a temporary name in the same folder, fsync, then a rename over the target.

A full disk or a killed process leaves the old file (or none), never a 0-byte or half-written one.
Written here by hand: the standard library has no atomic replace-with-content and filelock only locks.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from pathlib import Path


@contextlib.contextmanager
def writing(path: Path, tmp: Path | None = None):
    """Name the file in an OSError raised by a write to it (f.write() errors carry no filename;
    a failure on the temporary file of an atomic write is named after the file it stands for)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None or (tmp is not None and exc.filename == str(tmp)):
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def atomic_write_text(path: Path, text: str | bytes) -> None:
    """Write a temporary file and rename it over `path`: a full disk leaves the old file (or none),
    never a 0-byte or half-written one, and no temporary file behind. Bytes are written as they are."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with writing(path, tmp), open(tmp, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):  # on a read-only folder the unlink fails too: the write's error wins
            tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: dict) -> None:
    text = json.dumps(_finite(obj), indent=2, sort_keys=False, default=str, allow_nan=False)
    atomic_write_text(path, text + "\n")


def _finite(o):
    """NaN/inf -> null: JSON has no NaN (a diverged run's metrics) and strict parsers reject it."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o
