"""Kill ``minmax train`` with SIGKILL at seeded random moments, resume it each time, and
require the end state to be bit-identical to a run that was never interrupted.

Kills land at three kinds of moment: mid checkpoint write (as soon as a new staging folder
``ckpt-N.tmp`` appears), shortly after a checkpoint completed (mid step, mid prune, mid
report) and at a random time after launch (imports, config, the resume itself). A kill
before the first checkpoint completed leaves nothing to resume: the run starts over.

The default run forks the test process for each launch (torch is already imported: ~0 s
start); the slow run launches ``python -m minmax`` afresh each time (~5 s start on 2 cores).
``benchmarks/faults.py`` reuses ``kill_and_resume`` to print its figures.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minmax.cli import main
from minmax.errors import UsageError
from minmax.train.checkpoint import CHECKPOINT, find_checkpoint

EVERY_KIMG = 0.64  # a checkpoint every 10 steps of 64
TOY = [
    "model.g_width=16",
    "model.d_width=16",
    "model.g_depth=1",
    "model.d_depth=1",
    "train.batch_size=64",
    "train.threads=1",
    "train.log_every_steps=5",
    f"train.checkpoint_every_kimg={EVERY_KIMG}",
    "eval.plots=false",
    "eval.n_samples=100",
]
ROUND_TIMEOUT_S = 300.0


def toy_args(n_checkpoints: int) -> list[str]:
    """The ring preset at toy size, ``n_checkpoints`` checkpoints long."""
    return ["--preset", "ring", *TOY, f"train.kimg={EVERY_KIMG * n_checkpoints:.2f}"]


class Spawned:
    """``python -m minmax ARGV`` in a fresh interpreter."""

    def __init__(self, argv: list[str], log: Path) -> None:
        with open(log, "ab") as out:
            command = [sys.executable, "-m", "minmax", *argv]
            self.process = subprocess.Popen(command, stdout=out, stderr=out)

    def poll(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        self.process.kill()

    def wait(self) -> int:
        return self.process.wait(timeout=ROUND_TIMEOUT_S)


class Forked:
    """``minmax.cli.main(ARGV)`` in a forked copy of this process (no import time)."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.process = multiprocessing.get_context("fork").Process(target=_run, args=(argv, log))
        self.process.start()

    def poll(self) -> int | None:
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()

    def wait(self) -> int:
        self.process.join(ROUND_TIMEOUT_S)
        return self.process.exitcode


def _run(argv: list[str], log: Path) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.exit(main(argv))


Launcher = Callable[[list[str], Path], Spawned | Forked]


@dataclass
class KillReport:
    kills: int = 0  # SIGKILLs sent
    mid_write: int = 0  # ... that cut a checkpoint write short (its staging folder stayed)
    fresh_starts: int = 0  # ... before the first checkpoint: the run started over
    launches: int = 0


def _snapshot(root: Path) -> tuple[set[int], set[tuple[str, int, int]]]:
    """({images seen of each finished checkpoint}, {(name, inode, ctime) of each staging})."""
    finished, staging = set(), set()
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return finished, staging
    for entry in entries:
        name = entry.name
        if not name.startswith("ckpt-"):
            continue
        if name.endswith(".tmp"):
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            staging.add((name, stat.st_ino, stat.st_ctime_ns))
        elif not name.endswith(".old"):
            finished.add(int(name[5:]))
    return finished, staging


def _has_checkpoint(run_dir: Path) -> bool:
    try:
        find_checkpoint(run_dir)
    except UsageError:
        return False
    return True


def kill_and_resume(
    run_dir: Path,
    args: list[str],
    n_kills: int,
    seed: int,
    launch: Launcher = Forked,
    after_round: Callable[[], None] = lambda: None,
) -> KillReport:
    """Train ``args`` into ``run_dir``, SIGKILLing it ``n_kills`` times and resuming it each
    time (``--resume``), then let it finish; returns what happened. ``after_round`` is called
    after each launch has been killed or has finished."""
    rng, report, root = random.Random(seed), KillReport(), run_dir / CHECKPOINT
    log = run_dir.with_name(run_dir.name + ".log")
    while True:
        if _has_checkpoint(run_dir):
            argv = ["train", "--quiet", "--resume", str(run_dir)]
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
            argv = ["train", "--quiet", "--out", str(run_dir), *args]
            report.fresh_starts += report.launches > 0
        finished_before, staging_before = _snapshot(root)
        newest_before = max(finished_before, default=-1)
        child = launch(argv, log)
        report.launches += 1
        if report.kills >= n_kills:
            assert child.wait() == 0, log.read_text()[-2000:]
            after_round()
            return report
        # The moment: the first three kinds in turn, then at random.
        kind = ["write", "after", "startup"][report.kills % 3] if report.kills < 3 else None
        kind = kind or rng.choice(["write", "write", "after", "after", "startup"])
        wait_writes, delay = rng.randrange(2), rng.uniform(0.0, 0.1 if kind == "after" else 0.3)
        start = time.monotonic()
        while child.poll() is None:
            finished, staging = _snapshot(root)
            written = sum(count > newest_before for count in finished)
            if kind == "startup" and time.monotonic() - start >= delay:
                break
            if kind == "write" and written >= wait_writes and staging - staging_before:
                break
            if kind == "after" and written >= wait_writes + 1:
                time.sleep(delay)
                break
            assert time.monotonic() - start < ROUND_TIMEOUT_S, "no progress"
            time.sleep(0.001)
        if child.poll() is not None:  # finished before its kill moment: the run is too short
            assert child.poll() == 0, log.read_text()[-2000:]
            raise AssertionError(f"the run ended after {report.kills} of {n_kills} kills")
        child.kill()
        child.wait()
        report.kills += 1
        report.mid_write += bool(_snapshot(root)[1] - staging_before)
        after_round()


def tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the run's newest checkpoint: weights, optimizer moments, RNG states."""
    folder = find_checkpoint(run_dir)
    return {
        f"{path.stem}/{key}": value
        for path in sorted(folder.glob("*.safetensors"))
        for key, value in load_file(str(path)).items()
    }


def differences(a: Path, b: Path) -> list[str]:
    """Names of the tensors that differ (bit for bit) between two runs' checkpoints."""
    ta, tb = tensors(a), tensors(b)
    if ta.keys() != tb.keys():
        return sorted(ta.keys() ^ tb.keys())
    return [key for key in ta if not torch.equal(ta[key], tb[key])]


def straight_run(run_dir: Path, args: list[str], launch: Launcher | None = None) -> None:
    """The uninterrupted reference; ``launch=None`` runs it here, which also imports (and
    warms up) everything the forked runs then start with."""
    argv = ["train", "--quiet", "--out", str(run_dir), *args]
    if launch is None:
        assert main(argv) == 0
        return
    log = run_dir.with_name(run_dir.name + ".log")
    assert launch(argv, log).wait() == 0, log.read_text()[-2000:]


def _check(tmp_path: Path, n_kills: int, n_checkpoints: int, launch: Launcher) -> KillReport:
    args = toy_args(n_checkpoints)
    straight_run(tmp_path / "straight", args, None if launch is Forked else launch)
    report = kill_and_resume(tmp_path / "killed", args, n_kills, seed=n_kills, launch=launch)
    assert report.kills == n_kills
    assert differences(tmp_path / "straight", tmp_path / "killed") == []
    assert "kind" in (tmp_path / "killed" / "metrics.jsonl").read_text()  # the report ran
    assert [line for line in (tmp_path / "killed.log").read_text().splitlines()
            if "Traceback" in line] == []  # fmt: skip
    return report


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork are POSIX")
def test_three_kills_resume_bit_identically(tmp_path):
    _check(tmp_path, n_kills=3, n_checkpoints=12, launch=Forked)


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_twenty_kills_of_fresh_processes_resume_bit_identically(tmp_path):
    report = _check(tmp_path, n_kills=20, n_checkpoints=64, launch=Spawned)
    assert report.mid_write >= 1, report
