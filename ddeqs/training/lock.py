"""One process at a time per run folder: an exclusive lock with the holder's name on it.

Two ``ddeqs train`` (or ``evaluate``) writing the same run folder would mix their files, and the
first to finish deletes the shared checkpoint. :func:`run_folder_lock` takes an OS-level lock
(``filelock``: released by the kernel when the process dies, so a ``kill -9`` never leaves a stale
lock) on ``<folder>/.ddeqs.lock`` and records who holds it (pid, host, start time, command) in
``<folder>/.ddeqs.lock.json``, so the refused process can say whom it waits for.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from ddeqs.errors import DDEQError

__all__ = ["LOCK_FILE", "RunFolderBusy", "run_folder_lock"]

LOCK_FILE = ".ddeqs.lock"
HOLDER_FILE = ".ddeqs.lock.json"


class RunFolderBusy(DDEQError):
    """Another process holds the run folder's lock."""


def _holder(folder: Path) -> str:
    try:
        h = json.loads((folder / HOLDER_FILE).read_text())
        return f"pid {h['pid']} on {h['host']}, started {h['started']} ({h['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (holder details unreadable)"


@contextlib.contextmanager
def run_folder_lock(folder: str | Path, what: str = "train") -> Iterator[None]:
    """Hold the lock of ``folder`` (created if needed) for the block; raise :class:`RunFolderBusy` if taken."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderBusy(
            f"{folder} is in use by {_holder(folder)}; wait for it to finish (or stop it) before running "
            f"'ddeqs {what}' on this folder again, or pass another --out"
        ) from None
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "command": " ".join(["ddeqs", what, *sys.argv[2:]])[:300] if sys.argv else f"ddeqs {what}"}
        (folder / HOLDER_FILE).write_text(json.dumps(info) + "\n")
        yield
    finally:
        (folder / HOLDER_FILE).unlink(missing_ok=True)
        lock.release()
