"""DDP through torchrun on CPU (gloo): the same model as one process, resumable, and failing
cleanly. Real ``torchrun`` launches: each costs ~10 s here, so they are shared by fixtures."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from minmax.config import resolve
from minmax.errors import UsageError
from minmax.train.checkpoint import find_checkpoint
from minmax.train.distributed import Dist
from minmax.train.loop import check_batch, train
from minmax.train.steps import Slice

# 10 G steps of 64 (32 per rank), lazy R1 every 2nd D step: the double backward runs under DDP;
# a discrete latent code whose learned shares feed on statistics summed over the ranks.
TOY = [
    "model.g_width=16",
    "model.d_width=16",
    "model.z_dim=4",
    "model.codes=4",
    "train.code_rate=0.1",
    "train.batch_size=64",
    "train.kimg=0.64",
    "train.lr_schedule=constant",
    "train.log_every_steps=5",
    "train.threads=1",
    "loss.r1_gamma=0.1",
    "loss.reg_every=2",
    "eval.n_samples=100",
    "eval.plots=false",
]
# DCGAN with batch-norm in G and D (statistics synchronised over ranks), conditional.
IMAGES = [
    "model.g_channels=8",
    "model.d_channels=8",
    "model.z_dim=8",
    "model.conditional=true",
    "train.batch_size=16",
    "train.kimg=0.096",
    "train.threads=1",
    "train.log_every_steps=2",
    "train.ema_warmup_kimg=0",
    "train.sync_bn=true",
    "train.precision=fp32",  # the maths is what is compared; bf16 rounding would swamp it
    "train.channels_last=false",  # and no layout chosen by timing
    "eval.plots=false",
]


def torchrun(args, *, nproc=2, launcher=("--standalone",), timeout=180, wait=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", *launcher,
           f"--nproc_per_node={nproc}", "-m", "minmax", "train", "--quiet", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip
    if not wait:
        return proc
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # leave no hung ranks behind (they would wait 30 min)
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 0, out[-3000:]
    return out


def weights(run_dir):
    folder = find_checkpoint(run_dir)
    return {n: load_file(str(folder / f"{n}.safetensors")) for n in ("G", "D", "G_ema")}


def assert_close(a, b, rtol=1e-4, atol=1e-5):
    for net in a:
        for key in a[net]:
            where = f"{net}.{key}"
            torch.testing.assert_close(
                a[net][key], b[net][key], rtol=rtol, atol=atol, msg=lambda m, w=where: f"{w}: {m}"
            )


def assert_equal(a, b):
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), (net, key)


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """One process × batch 64 (in this process), and 2 ranks × 32 through torchrun."""
    root = tmp_path_factory.mktemp("ddp")
    train(resolve("ring", overrides=TOY), root / "one", progress=False)
    torchrun(["--out", str(root / "two"), *TOY])
    return root


def test_two_ranks_train_the_same_model_as_one_process_with_twice_the_batch(toy_runs):
    assert_close(weights(toy_runs / "one"), weights(toy_runs / "two"))


def test_batch_norm_statistics_span_the_ranks(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(64, 28, 28), dtype=np.uint8)
    data = tmp_path / "digits.npz"
    np.savez(data, x=x, y=np.arange(64) % 4)
    overrides = [f"data.name={data}", *IMAGES]
    train(resolve("mnist-dcgan", overrides=overrides), tmp_path / "one", progress=False)
    torchrun(["--preset", "mnist-dcgan", "--out", str(tmp_path / "two"), *overrides])
    # fp32 reductions in another order, through batch-norm's 1/σ: a looser tolerance.
    assert_close(weights(tmp_path / "one"), weights(tmp_path / "two"), rtol=1e-3, atol=1e-4)
    # Per-rank statistics (sync off) train a different model: the test can tell.
    torchrun(["--preset", "mnist-dcgan", "--out", str(tmp_path / "local"), *overrides,
              "train.sync_bn=false"])  # fmt: skip
    far = weights(tmp_path / "local")["G"]
    near = weights(tmp_path / "one")["G"]
    assert any(not torch.allclose(far[k], near[k], rtol=1e-3, atol=1e-4) for k in far)


def test_a_two_rank_run_resumes_on_two_ranks_and_on_one(toy_runs, tmp_path):
    torchrun(["--out", str(tmp_path / "r"), *TOY, "train.kimg=0.32"])
    shutil.copytree(tmp_path / "r", tmp_path / "s")
    # Same world size: bit-identical to the straight run.
    torchrun(["--resume", str(tmp_path / "r"), "train.kimg=0.64"])
    assert_equal(weights(toy_runs / "two"), weights(tmp_path / "r"))
    # One process picks up the same checkpoint: the same model to float tolerance.
    cfg = resolve(config_file=tmp_path / "s" / "config.yaml", overrides=["train.kimg=0.64"])
    train(cfg, tmp_path / "s", resume=True, progress=False)
    assert_close(weights(toy_runs / "one"), weights(tmp_path / "s"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_loopback_train_the_same_model(toy_runs, tmp_path):
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [
        torchrun(["--out", str(tmp_path / "nodes"), *TOY], nproc=1, wait=False,
                 launcher=("--nnodes=2", f"--node-rank={rank}", "--rdzv-backend=c10d",
                           f"--rdzv-endpoint={endpoint}", "--rdzv-id=minmax-test"))
        for rank in (0, 1)
    ]  # fmt: skip
    for node in nodes:
        out, _ = node.communicate(timeout=180)
        assert node.returncode == 0, out[-3000:]
    assert_close(weights(toy_runs / "two"), weights(tmp_path / "nodes"))


def test_a_batch_that_does_not_split_over_the_ranks_is_refused():
    with pytest.raises(UsageError, match="multiple of 6"):
        check_batch(resolve("ring", overrides=["train.batch_size=64", "train.accum_steps=3"]).train,
                    Dist(rank=1, world_size=2))  # fmt: skip
    part = check_batch(resolve("ring", overrides=["train.batch_size=64"]).train, Dist(1, 4))
    assert part == Slice(start=16, size=16, parts=1)


def test_an_unreachable_rendezvous_fails_with_a_clear_message(tmp_path):
    env = {**os.environ, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "minmax", "train", "--quiet", "--out", str(tmp_path / "r"),
         *TOY, "train.dist_timeout_s=2"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "could not join the process group" in proc.stderr.splitlines()[-1]
    assert time.monotonic() - start < 60
    assert not (tmp_path / "r").exists()


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds torchrun's workers in /proc")
def test_a_rank_dying_mid_run_stops_the_others_and_keeps_the_checkpoint(tmp_path):
    run = tmp_path / "r"
    proc = torchrun(["--out", str(run), *TOY, "train.kimg=10000", "train.checkpoint_every_kimg=1"],
                    wait=False)  # fmt: skip
    deadline = time.monotonic() + 120
    log = run / "metrics.jsonl"  # its first record is the speed choice: wait for a loss line
    while time.monotonic() < deadline and not (log.is_file() and "loss_D" in log.read_text()):
        time.sleep(0.5)
    time.sleep(2)  # several checkpoints written by now
    workers = _children(proc.pid)
    assert len(workers) == 2, workers
    os.kill(workers[-1], signal.SIGKILL)
    killed = time.monotonic()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert time.monotonic() - killed < 90, "the surviving rank hung"
    assert "exitcode  : -9" in out or "SIGKILL" in out, out[-2000:]
    assert weights(run)["G"]  # the last complete checkpoint loads
