"""Training speed at 1 and 2 processes (torchrun, gloo) on this machine, and on a GPU.

    python benchmarks/scaling.py                     # CPU: DCGAN and ResNet presets
    python benchmarks/scaling.py --gpu               # 1 GPU: fp32, bf16, channels-last, compile

CPU: each preset's training iteration (n_dis D steps + 1 G step at the preset's global batch)
timed after warm-up as 1 process × 1 thread, 1 process × 2 threads and, through ``torchrun
--standalone --nproc_per_node=2``, 2 processes × 1 thread (each rank half the batch; batch-norm
statistics per rank, and once more synchronised over ranks with ``train.sync_bn=true``), and
once more with DDP left out: the ranks then never exchange gradients (not a valid training
run), which bounds what any tuning of the all-reduce could reach. Scaling efficiency is images/s
over twice the 1 × 1 figure. This machine's speed drifts by ±15% over minutes, so the fast
preset's cells are medians of 5 interleaved repeats. GPU: one process, the same iteration in the
listed numerics. Data as in ``benchmarks/mnist.py`` (MNIST where present, else random pixels of
the preset's shape). Every cell is a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# (timed steps, warm-up, repeats): each cell is the median of its repeats, taken in turn
CPU_PRESETS = {"mnist-dcgan": (20, 5, 5), "cifar10-sngan": (3, 1, 1)}
NO_ALLREDUCE = "--no-allreduce"
GPU_ROWS = {  # name: (preset, overrides)
    "mnist-dcgan": ("mnist-dcgan", []),
    "mnist-dcgan, batch 1024": ("mnist-dcgan", ["train.batch_size=1024"]),
    "cifar10-sngan": ("cifar10-sngan", []),
    "cifar10-biggan": ("cifar10-biggan", []),
}
GPU_VARIANTS = {
    "auto (default)": [],
    "fp32": ["train.precision=fp32", "train.channels_last=false"],
    "bf16": ["train.precision=bf16", "train.channels_last=false"],
    "bf16+NHWC": ["train.precision=bf16", "train.channels_last=true"],
    "bf16+NHWC+compile": ["train.precision=bf16", "train.channels_last=true", "train.compile=true"],
}


def worker(args: argparse.Namespace) -> None:
    """Time ``args.steps`` iterations on this rank; rank 0 prints one JSON line."""
    import torch
    from mnist import bench_source

    from minmax.augment import DiffAugment
    from minmax.config import resolve
    from minmax.objectives import get_objective
    from minmax.train import distributed
    from minmax.train.loop import build_run, iteration

    torch.set_num_threads(args.threads)
    if NO_ALLREDUCE in args.overrides:  # the bound: ranks compute alone, nothing is exchanged
        args.overrides.remove(NO_ALLREDUCE)
        distributed.wrap = lambda module, d: module
    cfg = resolve(args.preset, overrides=[*args.overrides, f"train.threads={args.threads}"])
    d = distributed.setup(cfg.train.device)
    source, data = bench_source(cfg)
    if "auto" in (cfg.train.precision, cfg.train.channels_last):  # as a run resolves them
        from minmax.train import autotune

        cfg = autotune.agree_speed(cfg, source, d).apply(cfg)
    run = build_run(cfg, source, d)
    augment = DiffAugment(cfg.augment.policy, run.local_rng)
    objective = get_objective(cfg.loss.objective)

    def sync() -> None:
        if d.device.type == "cuda":
            torch.cuda.synchronize()
        distributed.barrier(d)

    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            sync()
            start = time.perf_counter()
        iteration(cfg, run, source, objective, augment)
        run.count.step += 1
    sync()
    seconds = time.perf_counter() - start
    if d.is_main:
        t = cfg.train
        images = args.steps * t.n_dis * t.batch_size
        print(json.dumps({"images_per_s": images / seconds, "data": data, "batch": t.batch_size,
                          "ms_per_iteration": 1000 * seconds / args.steps}))  # fmt: skip
    distributed.teardown(d)


def measure(preset: str, steps: int, warmup: int, procs: int, threads: int, overrides=()) -> dict:
    me = [__file__, "_worker", preset, str(steps), str(warmup), str(threads), *overrides]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={procs}", *me]  # fmt: skip
    else:
        cmd = [sys.executable, *me]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cpu(args: argparse.Namespace) -> None:
    from minmax.machine import machine_summary

    print(f"# {machine_summary()}")
    print(f"# CPU, {os.cpu_count()} cores; images/s of training iterations after warm-up")
    print("| preset | data | batch | 1 proc × 1 thread | 1 proc × 2 threads | "
          "2 procs × 1 thread | 2 procs vs 1 × 2 | efficiency vs 2 × (1 × 1) | "
          "2 procs × 1 thread, sync_bn | 2 procs × 1 thread, no all-reduce (bound) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets:
        steps, warmup, repeats = CPU_PRESETS.get(preset, (10, 2, 1))
        configs = [(1, 1, []), (1, 2, []), (2, 1, []), (2, 1, ["train.sync_bn=true"]),
                   (2, 1, [NO_ALLREDUCE])]  # fmt: skip
        runs = [[] for _ in configs]
        for _ in range(repeats):  # interleaved, so a slow spell of the machine hits all alike
            for cell, (procs, threads, extra) in zip(runs, configs, strict=True):
                cell.append(measure(preset, steps, warmup, procs, threads, extra))
        a, b, c, e, f = (statistics.median(r["images_per_s"] for r in cell) for cell in runs)
        first = runs[0][0]
        print(f"| {preset} | {first['data']} | {first['batch']} | {a:.1f} | {b:.1f} | {c:.1f} | "
              f"{c / b:.2f}× | {c / (2 * a):.0%} | {e:.1f} | {f:.1f} |", flush=True)  # fmt: skip


def gpu(args: argparse.Namespace) -> None:
    import torch

    from minmax.machine import machine_summary

    print(f"# {machine_summary()}")
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}; images/s, 1 process")
    print("| preset | data | batch | " + " | ".join(GPU_VARIANTS) + " |")
    print("|---|---|---|" + "---|" * len(GPU_VARIANTS))
    for name, (preset, extra) in GPU_ROWS.items():
        row = []
        for overrides in GPU_VARIANTS.values():
            warmup = 15 if "train.compile=true" in overrides else 5
            r = measure(preset, args.gpu_steps, warmup, 1, 4, [*extra, *overrides])
            row.append(f"{r['images_per_s']:.0f}")
        print(f"| {name} | {r['data']} | {r['batch']} | " + " | ".join(row) + " |", flush=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        preset, steps, warmup, threads, *overrides = sys.argv[2:]
        ns = argparse.Namespace(preset=preset, steps=int(steps), warmup=int(warmup),
                                threads=int(threads), overrides=overrides)  # fmt: skip
        return worker(ns)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="*", help="CPU presets (default: DCGAN and ResNet)")
    parser.add_argument("--gpu", action="store_true", help="time one GPU instead of the CPU")
    parser.add_argument("--gpu-steps", type=int, default=50)
    args = parser.parse_args()
    if args.gpu:
        return gpu(args)
    args.presets = args.presets or list(CPU_PRESETS)
    cpu(args)


if __name__ == "__main__":
    main()
