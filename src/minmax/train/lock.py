"""One training process per run folder: ``RUN_DIR/.lock`` says who holds it.

Two runs writing one folder interleave their checkpoints and metrics lines and spoil both, so
a run holds the folder's lock while it writes::

    with RunLock(run_dir):
        train(...)

The lock is a file created atomically (``O_CREAT | O_EXCL``: of two processes racing, exactly
one creates it) holding ``{"pid", "host", "started"}`` as JSON. A second process is refused
with a UsageError naming the holder. A lock left behind by a run that died without releasing
it (killed, out of memory, power cut) is stale when its host is this machine and its PID no
longer runs: it is reported on stderr and taken over. A lock from another host cannot be
checked from here, so it is never taken over; the error says how to remove it by hand.

Limits: a PID reused by an unrelated process makes a stale lock look held (the error says to
delete the file); across machines sharing a filesystem only the host name guards the folder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from minmax.errors import UsageError

LOCK_FILE = ".lock"
# A lock file is empty only between its creation and its one write (microseconds); one that
# stays unreadable for longer was left by a process that died in between.
UNREADABLE_GRACE_S = 10.0


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (signal 0 checks without signalling)."""
    if os.name == "nt":  # os.kill would terminate it there: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it runs, as another user
        return True
    return True


def _parse(text: str) -> dict | None:
    """The holder recorded in a lock file, or None when the text is not a complete record."""
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    if not isinstance(holder, dict):
        return None
    pid, host = holder.get("pid"), holder.get("host")
    if not isinstance(pid, int) or pid <= 0 or not isinstance(host, str):
        return None
    return holder


class RunLock:
    """Exclusive use of ``run_dir`` by this process, as a context manager (or ``acquire`` /
    ``release``). The folder is created if missing. Released on exit, exceptions included."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._record: str | None = None  # what we wrote: release removes only our own lock

    @property
    def held(self) -> bool:
        return self._record is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        self.release()

    def acquire(self) -> RunLock:
        """Take the lock, taking over a stale one; UsageError if another run holds it."""
        if self.held:
            raise RuntimeError(f"this RunLock already holds '{self.path}'")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        record = json.dumps(
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )
        for _ in range(3):  # each pass that finds a stale lock removes it, then tries again
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._remove_if_stale()
                continue
            with os.fdopen(fd, "w") as file:
                file.write(record)
                file.flush()
                os.fsync(file.fileno())
            self._record = record
            return self
        raise UsageError(
            f"could not lock run folder '{self.run_dir}': its lock file '{self.path}' keeps "
            "reappearing; is another run starting there?"
        )

    def release(self) -> None:
        """Remove the lock file if it is still ours; a no-op when not held."""
        if self._record is None:
            return
        try:
            if self.path.read_text() == self._record:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self._record = None

    def _in_use(self, holder: dict | None) -> UsageError:
        if holder is None:
            return UsageError(
                f"run folder '{self.run_dir}' is being locked by another process right now: "
                "use another folder, or wait and retry"
            )
        who = f"PID {holder['pid']} on {holder['host']} (since {holder.get('started', '?')})"
        here = socket.gethostname()
        check = (
            "if no run there uses it"
            if holder["host"] == here
            else f"it cannot be checked from {here}: if no run on {holder['host']} uses it"
        )
        return UsageError(
            f"run folder '{self.run_dir}' is in use by {who}: wait for that run to end or "
            f"choose another folder; {check}, delete '{self.path}'"
        )

    def _remove_if_stale(self) -> None:
        """Remove the existing lock if its holder is gone; else raise the in-use error."""
        try:
            text = self.path.read_text()
            age_s = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return  # released meanwhile: try again
        holder = _parse(text)
        if holder is None and age_s < UNREADABLE_GRACE_S:
            raise self._in_use(None)
        if holder is not None and (holder["host"] != socket.gethostname() or _alive(holder["pid"])):
            raise self._in_use(holder)
        why = (
            f"by PID {holder['pid']} (since {holder.get('started', '?')}), which no longer runs"
            if holder is not None
            else "by a process that died while writing the lock"
        )
        # Move the file aside and check it is the one judged stale: another process may have
        # taken the lock over since it was read. If so, put that fresh lock back.
        aside = self.path.with_name(f"{LOCK_FILE}.stale.{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        moved = aside.read_text()
        if moved != text:
            os.replace(aside, self.path)
            raise self._in_use(_parse(moved))
        aside.unlink()
        print(
            f"minmax: run folder '{self.run_dir}' was locked {why}: taking the lock over",
            file=sys.stderr,
        )
