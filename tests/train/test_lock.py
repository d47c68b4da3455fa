"""RunLock: one process per run folder; a second is refused by name, a dead holder's lock is
taken over with a note on stderr, and the lock goes away on exit, exceptions included."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from minmax.errors import UsageError
from minmax.train.lock import LOCK_FILE, UNREADABLE_GRACE_S, RunLock

HOLD = """
import sys
from minmax.train.lock import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def holder_process(run_dir) -> subprocess.Popen:
    """A second Python process holding the lock on ``run_dir`` until its stdin closes."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "locked"
    return child


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def write_lock(run_dir, **holder) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK_FILE).write_text(json.dumps(holder))


def test_lock_file_records_the_holder_and_goes_away(tmp_path):
    run_dir = tmp_path / "runs" / "00001"
    with RunLock(run_dir) as lock:
        assert lock.held
        holder = json.loads((run_dir / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["started"].endswith("+00:00")
    assert not lock.held and not (run_dir / LOCK_FILE).exists()


def test_released_when_the_run_raises(tmp_path):
    with pytest.raises(ZeroDivisionError), RunLock(tmp_path):
        1 / 0  # noqa: B018
    assert not (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path):  # and free to take again
        pass


def test_a_second_process_is_refused_until_the_first_ends(tmp_path):
    child = holder_process(tmp_path)
    try:
        with pytest.raises(UsageError) as info:
            RunLock(tmp_path).acquire()
        message = str(info.value)
        assert f"in use by PID {child.pid} on {socket.gethostname()}" in message
        assert str(tmp_path) in message and "\n" not in message
        assert (tmp_path / LOCK_FILE).exists(), "the refused process leaves the lock alone"
    finally:
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    assert not (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path):
        pass


def test_a_killed_holders_lock_is_taken_over(tmp_path, capsys):
    child = holder_process(tmp_path)
    child.send_signal(signal.SIGKILL)  # no chance to release
    child.wait(timeout=30)
    child.stdin.close()
    assert (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    stderr = capsys.readouterr().err
    assert f"locked by PID {child.pid}" in stderr and "taking the lock over" in stderr


def test_the_same_process_cannot_lock_twice(tmp_path):
    with RunLock(tmp_path) as lock:
        with pytest.raises(UsageError, match=f"PID {os.getpid()}"):
            RunLock(tmp_path).acquire()
        with pytest.raises(RuntimeError, match="already holds"):
            lock.acquire()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    write_lock(tmp_path, pid=dead_pid(), host="elsewhere", started="2020-01-01T00:00:00+00:00")
    with pytest.raises(UsageError) as info:
        RunLock(tmp_path).acquire()
    message = str(info.value)
    assert "on elsewhere" in message and "cannot be checked" in message
    assert str(tmp_path / LOCK_FILE) in message


def test_unreadable_lock_files_wait_a_grace_period(tmp_path, capsys):
    (tmp_path / LOCK_FILE).write_text("")  # a holder between creating the file and writing it
    with pytest.raises(UsageError, match="being locked by another process"):
        RunLock(tmp_path).acquire()
    old = time.time() - UNREADABLE_GRACE_S - 1  # ... or one that died there
    os.utime(tmp_path / LOCK_FILE, (old, old))
    with RunLock(tmp_path):
        pass
    assert "died while writing the lock" in capsys.readouterr().err


def test_release_never_removes_someone_elses_lock(tmp_path):
    lock = RunLock(tmp_path).acquire()
    write_lock(tmp_path, pid=1, host="elsewhere", started="now")  # replaced behind our back
    lock.release()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["host"] == "elsewhere"
    lock.release()  # a second release is a no-op
