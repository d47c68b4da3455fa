"""SIGTERM (a scheduler) and SIGINT (Ctrl-C) stop a run cleanly: checkpoint, report, exit 0."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from minmax.train.checkpoint import find_checkpoint

TINY = ["model.g_width=16", "model.d_width=16", "model.z_dim=4", "train.batch_size=64",
        "train.threads=1", "train.log_every_steps=5", "train.kimg=100000",
        "eval.n_samples=100", "eval.plots=false"]  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_checkpoints_and_exits_cleanly(tmp_path, sig):
    run = tmp_path / "r"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "minmax", "train", "--quiet", "--out", str(run),
                             *TINY], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    log = run / "metrics.jsonl"  # its first record is the speed choice: wait for a loss line
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (log.is_file() and "loss_D" in log.read_text()):
        time.sleep(0.2)
    assert log.is_file() and "loss_D" in log.read_text(), (
        proc.stderr.read() if proc.poll() is not None else "no training step logged in 60 s"
    )
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    final = lines[-1]
    assert final["kind"] == "final" and final["stopped_by"] == "signal"
    state = json.loads((find_checkpoint(run) / "state.json").read_text())
    assert state["step"] == final["step"] > 0  # the checkpoint is the step it stopped at
    assert not (run / ".lock").exists()
