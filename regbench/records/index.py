"""The run index and the process markers: who started which run, and whether that process still lives.

`<results_dir>/.regbench-index.jsonl` holds one JSON line per run start and end, appended whole under a
file lock (resume looks runs up there by config hash; records/folder.py reads it); a run folder holds
`.running` (its process: host, pid, start time) while it trains, renamed `.failed` when the run failed
and its summary.json could not be written. claims.py keeps its claims under the same lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
from pathlib import Path

from regbench.core.files import atomic_write_text, writing

log = logging.getLogger("regbench")

INDEX = ".regbench-index.jsonl"  # in results_dir: one JSON line per run start / end, appended under a lock
RUNNING = ".running"  # in a run folder while its process lives: "<host> <pid> <process start time>"
FAILED = ".failed"  # the .running marker renamed when the run failed and summary.json could not be written


def append(results_dir: Path, entry: dict) -> None:
    """Append one whole line under an exclusive lock, or nothing: parallel jobs never interleave or lose a line.

    filelock takes an OS lock on `<index>.lock` (fcntl on Unix, msvcrt on Windows); the lock file
    stays in results_dir, which is how filelock keeps the lock safe between processes. The line is
    written with os.write, unbuffered: a failed write (disk full) is cut back to where it started and
    nothing is left in a buffer to land after the cut when the file closes (a buffered file did that:
    its rest was glued to the next entry). A torn tail that an older version left is cut off first.
    """
    from filelock import FileLock

    data = (json.dumps(entry, sort_keys=True) + "\n").encode()
    path = Path(results_dir) / INDEX
    with writing(path), FileLock(f"{path}.lock"):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = _cut_torn_tail(fd, path)
            try:
                done = 0
                while done < len(data):
                    done += os.write(fd, data[done:])
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    if size == 0:  # the first line: leave no empty index
                        path.unlink()
                    else:
                        os.ftruncate(fd, size)
                raise
        finally:
            os.close(fd)


TAIL_BLOCK = 4096  # bytes read at a time, backwards, to find the last whole line of a torn index


def _cut_torn_tail(fd: int, path: Path) -> int:
    """The index's size once a last line without its newline (a write cut short by an older version, or a
    power loss) is cut off, with one warning; a whole index is left as it is."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size
    end = size
    while end > 0:
        start = max(0, end - TAIL_BLOCK)
        newline = os.pread(fd, end - start, start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    os.ftruncate(fd, end)
    log.warning("warning: %s: cut off a torn last line of %d bytes (a write that did not finish)", path, size - end)
    return end


def _process_start(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat field 22): a pid the
    system reused for another process has another start time. '-' where /proc is unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "-"


def process_identity() -> dict:
    """host, pid and start time of this process: enough to tell later whether it still runs."""
    return {"host": platform.node(), "pid": os.getpid(), "started": _process_start(os.getpid())}


def mark_started(results_dir: str, run_dir: Path, cfg_hash: str) -> None:
    me = process_identity()
    atomic_write_text(run_dir / RUNNING, identity_text() + "\n")
    rel = os.path.relpath(run_dir, results_dir)
    append(Path(results_dir), {"config_hash": cfg_hash, "run_dir": rel, "status": "running", **me})


def mark_finished(results_dir: str, run_dir: Path, summary: dict, summary_written: bool = True) -> None:
    """Close the run in the index (with its error, if any); the .running marker goes, or becomes .failed when
    summary.json could not be written (a rename needs no free space), so a rerun says `failed`, not `killed`.
    In a folder that became read-only not even the rename is possible: then the index entry, in results_dir,
    is what says `failed` and why (records/folder.py reads it)."""
    rel = os.path.relpath(run_dir, results_dir)
    error = {"error": summary["error"]} if summary.get("error") else {}
    try:
        append(Path(results_dir), {"config_hash": summary["config_hash"], "run_dir": rel,
                                          "status": summary["status"], **error})
    finally:
        if summary_written:
            (run_dir / RUNNING).unlink(missing_ok=True)
        else:
            with contextlib.suppress(OSError):
                os.replace(run_dir / RUNNING, run_dir / FAILED)


def alive(run_dir: Path) -> bool:
    """Is the process that started this run still running? (its .running marker: identity_alive)"""
    try:
        return identity_alive((run_dir / RUNNING).read_text())
    except OSError:
        return False


def identity_text() -> str:
    """This process as one line, "<host> <pid> <process start time>": what markers and claims hold."""
    me = process_identity()
    return f"{me['host']} {me['pid']} {me['started']}"


def identity_alive(text: str) -> bool:
    """Does the process named by identity_text() still run? Checked on this host by pid and start
    time (a reused pid is another process); a process of another host is assumed alive."""
    try:
        host, pid, *started = text.split()
        pid = int(pid)
    except ValueError:
        return False
    if host != platform.node():
        return True  # another machine's job: assume alive, never touch it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not started or started[0] == "-" or _process_start(pid) == started[0]
