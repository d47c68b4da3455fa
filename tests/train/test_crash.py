"""Kill ``minmax train`` with SIGKILL at seeded random moments, resume it each time, and
require the end state to be bit-identical to a run that was never interrupted.

Kills land at three kinds of moment: mid checkpoint write (as soon as a new staging folder
``ckpt-N.tmp`` appears), shortly after a checkpoint completed (mid step, mid prune, mid
report) and at a random time after launch (imports, config, the resume itself). Each kill is
followed by what a user would do: ``--resume RUN`` once RUN holds a config.yaml (a run
killed before its first checkpoint starts over from step 0), else the same ``--out RUN``.

Phase kills are deterministic: the launch SIGKILLs itself (``arm``) the moment it is about
to create or rename into place a given file: before the run folder exists, before and after
config.yaml, in the first checkpoint's staging folder, before a later checkpoint, in the
final report's plots (``PHASES``).

The default run forks the test process for each launch (torch is already imported: ~0 s
start); the slow run launches ``python -m minmax`` afresh each time (~5 s start on 2 cores).
``benchmarks/faults.py`` reuses ``kill_and_resume`` to print its figures.
"""

from __future__ import annotations

import builtins
import io
import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
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


@dataclass(frozen=True)
class Phase:
    """A deterministic kill: SIGKILL at the ``nth`` call of ``event`` ("mkdir", "replace":
    the target, or "open" for writing) on a path whose name fullmatches ``name``; before
    the call, or once it has returned (``after``)."""

    event: str
    name: str
    nth: int = 1
    after: bool = False


STAGING = r"ckpt-\d{12}\.tmp"
# Each phase of a run, a few kill points each (tests take the first; benchmarks/faults.py
# cycles through them). "{run}" is the run folder's name.
PHASES = {
    "a) before the run folder or its config.yaml": [
        Phase("mkdir", "{run}"),  # no folder yet
        Phase("replace", r"config\.yaml"),  # the folder, its lock, config.yaml.part
    ],
    "b) after config.yaml, before the first checkpoint": [
        Phase("replace", r"config\.yaml", after=True),
    ],
    "c) during the first checkpoint write": [
        Phase("open", r"training\.safetensors\.part", after=True),  # an empty file in it
        Phase("open", r"networks\.json\.part"),  # the staging folder empty
        Phase("replace", r"manifest\.json"),  # all but the manifest
        Phase("replace", r"ckpt-\d{12}"),  # whole, but still staged
    ],
    "d) between checkpoints": [
        Phase("mkdir", STAGING, nth=2),  # one checkpoint and 10 steps more, not the next
    ],
    "e) during the final report": [
        Phase("open", r"samples\.png"),  # after the last checkpoint, before the plots
        Phase("open", r"discriminator\.png", after=True),  # samples.png written
    ],
}
REPORT_ARGS = ["eval.plots=true"]  # phase e needs the report's plots


def arm(phase: Phase, run_name: str) -> None:
    """Make this process SIGKILL itself at ``phase`` (called in a launch, before main)."""
    pattern, seen = re.compile(phase.name.replace("{run}", re.escape(run_name))), 0

    def hooked(real: Callable, path_of: Callable) -> Callable:
        def call(*args, **kwargs):
            nonlocal seen
            path = path_of(*args, **kwargs)
            hit = path is not None and pattern.fullmatch(os.path.basename(os.fsdecode(path)))
            seen += bool(hit)
            hit = hit and seen == phase.nth
            if hit and not phase.after:
                os.kill(os.getpid(), signal.SIGKILL)
            result = real(*args, **kwargs)
            if hit:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        return call

    def written(file, mode="r", *args, **kwargs):
        return file if isinstance(file, str | os.PathLike) and set(mode) & set("wax+") else None

    if phase.event == "mkdir":
        os.mkdir = hooked(os.mkdir, lambda path, *args, **kwargs: path)
    elif phase.event == "replace":
        os.replace = hooked(os.replace, lambda src, dst, *args, **kwargs: dst)
    else:
        builtins.open = io.open = hooked(builtins.open, written)


def run_armed(phase: str, run_name: str, argv: list[str]) -> int:
    """``minmax ARGV``, killed at ``phase`` (JSON): what a Spawned launch runs."""
    arm(Phase(**json.loads(phase)), run_name)
    return main(argv)


# A fresh interpreter that imports this file by its path, arms the kill, then runs minmax.
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); import test_crash as t; "
    "sys.exit(t.run_armed(*sys.argv[2:4], sys.argv[4:]))"
)


def _run_dir_name(argv: list[str]) -> str:
    return Path(argv[argv.index("--out" if "--out" in argv else "--resume") + 1]).name


class Spawned:
    """``python -m minmax ARGV`` in a fresh interpreter (armed to die at ``phase``)."""

    def __init__(self, argv: list[str], log: Path, phase: Phase | None = None) -> None:
        with open(log, "ab") as out:
            command = [sys.executable, "-m", "minmax", *argv]
            if phase is not None:
                here, armed = str(Path(__file__).parent), json.dumps(asdict(phase))
                command = [sys.executable, "-c", _BOOT, here, armed, _run_dir_name(argv), *argv]
            self.process = subprocess.Popen(command, stdout=out, stderr=out)

    def poll(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        self.process.kill()

    def wait(self) -> int:
        return self.process.wait(timeout=ROUND_TIMEOUT_S)


class Forked:
    """``minmax.cli.main(ARGV)`` in a forked copy of this process (no import time)."""

    def __init__(self, argv: list[str], log: Path, phase: Phase | None = None) -> None:
        context = multiprocessing.get_context("fork")
        self.process = context.Process(target=_run, args=(argv, log, phase))
        self.process.start()

    def poll(self) -> int | None:
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()

    def wait(self) -> int:
        self.process.join(ROUND_TIMEOUT_S)
        return self.process.exitcode


def _run(argv: list[str], log: Path, phase: Phase | None) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    # pytest's sys.stdout/stderr do not write to fds 1 and 2: the log would stay empty.
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    if phase is not None:
        arm(phase, _run_dir_name(argv))
    sys.exit(main(argv))


Launcher = Callable[..., Spawned | Forked]  # (argv, log, phase=None)


@dataclass
class KillReport:
    kills: int = 0  # SIGKILLs sent
    mid_write: int = 0  # ... that cut a checkpoint write short (its staging folder stayed)
    fresh_starts: int = 0  # ... before the first checkpoint: the run started over
    launches: int = 0
    states: list[str] = field(default_factory=list)  # the run folder after each kill


def state(run_dir: Path) -> str:
    """What a kill left: "no folder", "no config", "no checkpoint", "unfinished first
    checkpoint" or "checkpointed"."""
    if not run_dir.is_dir():
        return "no folder"
    if not (run_dir / "config.yaml").is_file():
        return "no config"
    finished, staging = _snapshot(run_dir / CHECKPOINT)
    if finished:
        return "checkpointed"
    return "unfinished first checkpoint" if staging else "no checkpoint"


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
    phases: Sequence[Phase] = (),
) -> KillReport:
    """Train ``args`` into ``run_dir``, SIGKILLing it ``n_kills`` times and continuing it
    each time (``--resume``, or the same ``--out`` while it has no config.yaml), then let it
    finish; returns what happened. The first kills are at ``phases``, in turn; the others
    at seeded random moments. ``after_round`` is called after each launch has been killed
    or has finished."""
    rng, report, root = random.Random(seed), KillReport(), run_dir / CHECKPOINT
    log = run_dir.with_name(run_dir.name + ".log")
    while True:
        if (run_dir / "config.yaml").is_file():
            argv = ["train", "--quiet", "--resume", str(run_dir)]
        else:
            argv = ["train", "--quiet", "--out", str(run_dir), *args]
        report.fresh_starts += report.launches > 0 and not _has_checkpoint(run_dir)
        finished_before, staging_before = _snapshot(root)
        newest_before = max(finished_before, default=-1)
        phase = phases[report.kills] if report.kills < min(n_kills, len(phases)) else None
        child = launch(argv, log, phase)
        report.launches += 1
        if report.kills >= n_kills:
            assert child.wait() == 0, log.read_text()[-2000:]
            after_round()
            return report
        if phase is not None:  # it kills itself
            code = child.wait()
            never = f"{phase} never came (exit {code}): is the run too short?"
            assert code == -signal.SIGKILL, f"{never}\n{log.read_text()[-2000:]}"
            report.kills += 1
            report.states.append(state(run_dir))
            report.mid_write += bool(_snapshot(root)[1] - staging_before)
            after_round()
            continue
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
        report.states.append(state(run_dir))
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


def _train_lines(run_dir: Path) -> set[tuple]:
    lines = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return {(r["step"], r["loss_D"], r["loss_G"]) for r in lines if r["kind"] == "train"}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fork are POSIX")
def test_a_kill_at_each_phase_resumes_bit_identically(tmp_path):
    args = [*toy_args(n_checkpoints=3), *REPORT_ARGS]
    straight_run(tmp_path / "straight", args)
    a, b, c, d, e = PHASES.values()
    phases = [*a, b[0], c[0], d[0], e[0]]  # (a) twice: no folder yet; one with no config
    killed = tmp_path / "killed"
    report = kill_and_resume(killed, args, len(phases), seed=0, phases=phases)
    reached = ["no folder", "no config", "no checkpoint", "unfinished first checkpoint"]
    assert report.states == [*reached, "checkpointed", "checkpointed"]
    assert differences(tmp_path / "straight", killed) == []
    log = (tmp_path / "killed.log").read_text()
    assert "taking the lock over" in log and "starting from step 0" in log
    assert "Traceback" not in log
    assert (killed / "samples.png").is_file() and (killed / "discriminator.png").is_file()
    # The log tells one run: each step's losses as in the uninterrupted run, and the
    # attempts that died before the first checkpoint set aside (step 5 appears once).
    assert _train_lines(killed) == _train_lines(tmp_path / "straight")
    steps = [json.loads(line).get("step") for line in (killed / "metrics.jsonl").open()]
    assert steps.count(5) == 1 and (killed / "metrics.before-restart.jsonl").is_file()
