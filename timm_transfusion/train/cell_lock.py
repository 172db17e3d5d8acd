"""One lock file per cell, so two workers never train the same run folder at once.

A lock is a small JSON file (pid, host, a random token, start time) that appears atomically (``os.link`` of a
complete temporary file, which fails when the lock exists) and works on shared file systems where
``flock`` may not. Its holder refreshes the file's modification time (a heartbeat); a lock is stale when its
holder is a dead process on this host, or when its heartbeat is older than ``stale_after`` seconds (a node
that died or was pre-empted). One worker at a time breaks a stale lock (under a ``.breaking`` guard file), so
two workers breaking it at once cannot both win.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..files import TMP_PREFIX

DEFAULT_STALE_AFTER = 600.0
BREAK_TIMEOUT_S = 60.0  # breaking a lock takes milliseconds


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, and how old its heartbeat is (seconds)."""

    pid: int
    host: str
    token: str
    started: float
    heartbeat_age: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, heartbeat {self.heartbeat_age:.0f} s ago"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def read_holder(path: Path) -> LockHolder | None:
    """The holder of the lock at ``path``, or None when there is none (or it vanished while being read)."""
    try:
        data = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except (json.JSONDecodeError, OSError):  # unreadable: treat as a holder with no life signs
        return LockHolder(pid=-1, host="?", token="", started=0.0, heartbeat_age=float("inf"))
    return LockHolder(
        pid=int(data["pid"]),
        host=str(data["host"]),
        token=str(data["token"]),
        started=float(data["started"]),
        heartbeat_age=max(age, 0.0),
    )


def is_stale(holder: LockHolder, stale_after: float) -> bool:
    """A dead process on this host, or no heartbeat for ``stale_after`` seconds (any host)."""
    if holder.host == socket.gethostname() and not _alive(holder.pid):
        return True
    return holder.heartbeat_age > stale_after


class CellLock:
    """The lock of one cell: ``acquire`` (False when another live worker holds it), ``touch``, ``release``."""

    def __init__(self, path: str | Path, *, stale_after: float = DEFAULT_STALE_AFTER) -> None:
        self.path = Path(path)
        self.stale_after = stale_after
        self.token = uuid.uuid4().hex
        self.held = False

    def acquire(self) -> bool:
        """Take the lock if it is free or stale; True when this object now holds it."""
        for _ in range(5):  # free -> taken; stale -> broken -> taken; a race lost -> look again
            if self._create():
                self.held = True
                return True
            holder = read_holder(self.path)
            if holder is not None and not is_stale(holder, self.stale_after):
                return False
            if holder is not None and not self._break(holder):
                return False
        return False

    def touch(self) -> bool:
        """Refresh the heartbeat; False when the lock is no longer this object's (it was broken as stale)."""
        holder = read_holder(self.path)
        if holder is None or holder.token != self.token:
            return False
        os.utime(self.path)
        return True

    def release(self) -> None:
        """Remove the lock if this object still holds it."""
        if self.held:
            holder = read_holder(self.path)
            if holder is not None and holder.token == self.token:
                self.path.unlink(missing_ok=True)
            self.held = False

    def _create(self, path: Path | None = None) -> bool:
        """Make ``path`` (default: the lock) appear complete, or fail when it exists."""
        path = path or self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "token": self.token,
            "started": time.time(),
        }
        staging = path.with_name(f"{TMP_PREFIX}{path.name}-{self.token}")
        staging.write_text(json.dumps(record) + "\n")
        try:
            os.link(staging, path)
        except FileExistsError:
            return False
        finally:
            staging.unlink(missing_ok=True)
        return True

    def _break(self, stale: LockHolder) -> bool:
        """Remove the stale lock; False when it turned out not to be stale. Only the worker holding the
        ``.breaking`` guard may break, and it checks again under the guard, so a fresh lock taken by another
        worker in the meantime is never removed."""
        guard = self.path.with_name(self.path.name + ".breaking")
        if not self._create(guard):
            try:  # another worker is breaking it; a guard older than BREAK_TIMEOUT_S was left by a killed one
                if time.time() - guard.stat().st_mtime > BREAK_TIMEOUT_S:
                    guard.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            return True
        try:
            current = read_holder(self.path)
            if current is None:
                return True
            if current.token != stale.token or not is_stale(current, self.stale_after):
                return False
            aside = self.path.with_name(f"{TMP_PREFIX}{self.path.name}-broken-{self.token}")
            os.rename(self.path, aside)
            moved = read_holder(aside)
            if moved is not None and moved.token != stale.token:  # its holder released, another re-took it
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)
                aside.unlink(missing_ok=True)
                return False
            aside.unlink(missing_ok=True)
            return True
        finally:
            guard.unlink(missing_ok=True)
