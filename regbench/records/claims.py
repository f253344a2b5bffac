"""Claims: under one results_dir, one process at a time trains a config (two identical sweeps at once).

Resume (folder.earlier_outcome) finds a config that already *finished*; a claim covers the time
in between, while a process trains it. Before a cell trains, its process claims the cell's key
(the config hash, within the sweep folder when there is one: resume's own scope); a second
process that finds the key held by a live process waits for it to be released and then asks
resume again, which finds the finished run and reuses it. So each cell is trained once.

A claim is the file `<results_dir>/.regbench-claims/<key>` holding its process's identity
(index.identity_text: host, pid, process start time). It is read and written under the run
index's file lock (filelock), so two processes never both take it; a claim whose process is
gone (kill -9, a reused pid: index.identity_alive) is taken over, so a dead claimant blocks
no one. A process of another host cannot be checked from here: its claim holds while the cell's
epochs keep refreshing it (`refresh`, the file's mtime) and is taken over once it is older than
STALE_SECONDS (a crashed node blocks a cell that long, not forever). The folder exists only
while claims are held; hidden, like the index, and never read by `regbench report`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from filelock import FileLock
from omegaconf import DictConfig

from regbench.core import files
from regbench.records import index

log = logging.getLogger("regbench")
CLAIMS = ".regbench-claims"  # in results_dir: one file per config being trained
POLL_SECONDS = 0.5  # how often a waiting process looks again (a cell trains for seconds at least)
STALE_SECONDS = 3600.0  # another host's claim not refreshed by an epoch for this long: its process is gone


def key(cfg: DictConfig, cfg_hash: str) -> str:
    """The claim's name: the config hash, prefixed by the sweep folder (a sweep trains its own cells)."""
    return f"{cfg.sweep_name}-{cfg_hash}" if cfg.get("sweep_name") else cfg_hash


def _lock(results_dir: str) -> FileLock:
    return FileLock(f"{Path(results_dir) / index.INDEX}.lock")  # the index's lock: short holds only


def _held(path: Path, holder: str) -> bool:
    """Does the process named in this claim still hold it (this host: pid + start time; another: fresh)?"""
    if not index.identity_alive(holder):
        return False
    if holder.split()[0] == index.process_identity()["host"]:
        return True
    try:
        return time.time() - path.stat().st_mtime < STALE_SECONDS
    except OSError:
        return False


def refresh(results_dir: str, name: str) -> None:
    """This process still trains the cell (called once per epoch): another host's waiter keeps waiting."""
    with contextlib.suppress(OSError):  # no claim (resume=false) or a read-only folder: nothing to refresh
        os.utime(Path(results_dir) / CLAIMS / name)


def take(results_dir: str, name: str) -> str | None:
    """Claim `name` for this process. None: it is ours now; else the identity of the live process holding it."""
    folder = Path(results_dir) / CLAIMS
    me = index.identity_text()
    with files.writing(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)  # results_dir: the lock file lives there
    with _lock(results_dir):
        with files.writing(folder):
            folder.mkdir(exist_ok=True)
        try:
            holder = (folder / name).read_text().strip()
        except FileNotFoundError:
            holder = ""
        if holder and holder != me and _held(folder / name, holder):
            return holder
        files.atomic_write_text(folder / name, me + "\n")  # free, ours already, or its process is gone
    return None


def release(results_dir: str, names) -> None:
    """Give up this process's claims among `names` (a claim another process took over stays its own)."""
    me = index.identity_text()
    folder = Path(results_dir) / CLAIMS
    with _lock(results_dir):
        for name in names:
            with contextlib.suppress(OSError):  # gone already, or unreadable: nothing of ours to remove
                if (folder / name).read_text().strip() == me:
                    (folder / name).unlink()
        with contextlib.suppress(OSError):  # the last claim gone: no folder is left behind (under the lock)
            folder.rmdir()


def held_by_others(results_dir: str, names) -> dict[str, str]:
    """The claims among `names` that live processes other than this one hold: name -> identity."""
    me, folder, held = index.identity_text(), Path(results_dir) / CLAIMS, {}
    for name in names:
        try:
            holder = (folder / name).read_text().strip()
        except OSError:
            continue
        if holder and holder != me and _held(folder / name, holder):
            held[name] = holder
    return held


def wait(results_dir: str, names: list[str]) -> None:
    """Block until no other live process holds any of `names` (one log line, not one per cell)."""
    held = held_by_others(results_dir, names)
    if held:
        holders = ", ".join(sorted({" ".join(h.split()[:2]) for h in held.values()}))
        what = "1 cell is" if len(held) == 1 else f"{len(held)} cells are"
        log.info("%s being trained by another process (host pid: %s): waiting, then resume reuses what it "
                 "finished", what, holders)
    while held:
        time.sleep(POLL_SECONDS)
        held = held_by_others(results_dir, held)


class Held:
    """The claims one process takes for a batch of cells (sweeps/stacked.py), by cell position: released as
    each part is trained, the rest on leaving the `with` block (an error or a signal on its way)."""

    def __init__(self):
        self.mine: dict[int, tuple[str, str]] = {}  # position -> (results_dir, claim name), held by this process
        self.others: dict[int, tuple[str, str]] = {}  # position -> (results_dir, claim name), held by another

    def take(self, position: int, results_dir: str, name: str) -> bool:
        """Claim one cell; False (and it goes to `others`) when another live process holds it."""
        if take(results_dir, name) is not None:
            self.others[position] = (results_dir, name)
            return False
        self.mine[position] = (results_dir, name)
        return True

    def release(self, positions) -> None:
        for results_dir, name in [self.mine.pop(p) for p in positions if p in self.mine]:
            release(results_dir, [name])

    def wait_for_others(self) -> None:
        for results_dir in {d for d, _ in self.others.values()}:
            wait(results_dir, [name for d, name in self.others.values() if d == results_dir])

    def __enter__(self) -> Held:
        return self

    def __exit__(self, *exc) -> None:
        self.release(list(self.mine))
