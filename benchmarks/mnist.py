"""Image benchmarks: training speed of every image preset, and the 10-minute MNIST quality race.

    python benchmarks/mnist.py speed                  # images/s and peak memory per preset
    python benchmarks/mnist.py race --preset mnist-dcgan --minutes 10
    python benchmarks/mnist.py score                  # baselines and the MNIST floor only

Speed: one training iteration is n_dis D steps + 1 G step at the preset's batch size, timed
after warm-up with the loop's own step functions, in a fresh process per preset (so its peak
resident memory is its own). Presets whose data are not on this machine (CIFAR-10, a folder)
are timed on random uint8 images of the preset's shape: speed does not depend on pixel values.

Race: ``minmax train`` for a wall-time budget, ``minmax sample`` 10,000 images, and scores
with the digits feature network (``minmax features train --data ../shared/data/mnist.npz``
first) against the MNIST test set. ``score`` gives the same scores for the classic
implementations' 10,000 samples in ../shared/data/baselines/ and for the MNIST training set
(the floor a perfect generator reaches).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MNIST = SHARED / "mnist.npz"
IMAGE_PRESETS = ["mnist-dcgan", "mnist-biggan", "cifar10-sngan", "cifar10-biggan", "folder-dcgan"]


def bench_source(cfg):
    """MNIST for MNIST presets when it is here; else random uint8 images of the preset's shape
    and class count (speed does not depend on pixel values). Returns (source, description)."""
    import torch

    from minmax.data.images import ImageDataset
    from minmax.data.sources import ImageSource, resolve_data

    if "mnist" in cfg.preset and MNIST.is_file():
        cfg.data.name = str(MNIST)
        return resolve_data(cfg.data), "MNIST"
    side = cfg.data.resolution or (28 if "mnist" in cfg.preset else 32)
    channels = 1 if "mnist" in cfg.preset else 3
    gen = torch.Generator().manual_seed(0)
    shape = (5000, channels, side, side)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (5000,), generator=gen)
    names = [str(i) for i in range(10)]
    source = ImageSource(ImageDataset(images, labels, 10, "random", names))
    return source, f"random {channels}x{side}x{side}"


def time_preset(
    preset: str, steps: int, warmup: int, threads: int, overrides: list[str] = (),
    budget_s: float = 120.0,
) -> dict:  # fmt: skip
    """Images/s of the loop's iteration for ``preset`` (runs in the child process). ``auto``
    settings are resolved as a run resolves them (the probe's time is reported, not counted);
    timing stops after ``budget_s`` seconds once one iteration is in (emulated bf16 is slow)."""
    import torch

    from minmax.augment import DiffAugment
    from minmax.config import resolve
    from minmax.objectives import get_objective
    from minmax.train import autotune
    from minmax.train.distributed import Dist
    from minmax.train.loop import build_run, iteration

    threads_set = [f"train.threads={threads}"] if threads else []
    cfg = resolve(preset, overrides=[*overrides, *threads_set])
    source, data = bench_source(cfg)
    probe_s, t = 0.0, cfg.train
    if "auto" in (t.precision, t.channels_last):
        began = time.perf_counter()
        speed = autotune.resolve_speed(cfg, source, Dist(), say=lambda text: None)
        probe_s = time.perf_counter() - began
        cfg = speed.apply(cfg)
    t, objective = cfg.train, get_objective(cfg.loss.objective)
    torch.set_num_threads(t.threads or torch.get_num_threads())  # explicit cells: no probe set it
    run = build_run(cfg, source)
    augment = DiffAugment(cfg.augment.policy, run.local_rng)
    timed, start = 0, None
    while timed < steps:
        if run.count.step == warmup:
            start = time.perf_counter()
        iteration(cfg, run, source, objective, augment)
        run.count.step += 1
        if start is not None:
            timed += 1
            if time.perf_counter() - start > budget_s:
                break
    seconds = time.perf_counter() - start
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in (("G", run.G), ("D", run.D))}
    run_cfg = autotune.unprobed(cfg, torch.device("cpu"))
    return {
        "preset": preset,
        "data": data,
        "arch": cfg.model.arch,
        "batch": t.batch_size,
        "n_dis": t.n_dis,
        "params_G": n_params["G"],
        "params_D": n_params["D"],
        "images_per_s": timed * t.n_dis * t.batch_size / seconds,
        "ms_per_iteration": 1000 * seconds / timed,
        "timed_iterations": timed,
        "precision": autotune.label(run_cfg.train.precision, run_cfg.train.channels_last is True),
        "probe_s": probe_s,
    }


def _time_child(preset: str, args: argparse.Namespace, overrides: list[str]) -> dict | None:
    """``time_preset`` in a fresh process: its peak resident memory is its own (MiB)."""
    cmd = [sys.executable, __file__, "_time", f"--budget-s={args.budget_s}", preset,
           str(args.steps), str(args.warmup), str(args.threads), *overrides]  # fmt: skip
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        return None
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_mib"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


# The explicit settings ``--compare`` times beside auto.
EXPLICIT = {
    "fp32": ["train.precision=fp32", "train.channels_last=false"],
    "fp32+NHWC": ["train.precision=fp32", "train.channels_last=true"],
    "bf16": ["train.precision=bf16", "train.channels_last=false"],
    "bf16+NHWC": ["train.precision=bf16", "train.channels_last=true"],
}


def speed(args: argparse.Namespace) -> None:
    from minmax.machine import machine_summary

    extra = f", overrides {' '.join(args.overrides)}" if args.overrides else ""
    print(f"# {machine_summary()}")
    print(f"# torch threads {args.threads or 'auto'}, {args.steps} timed iterations after "
          f"{args.warmup}{extra}")  # fmt: skip
    if args.compare:
        return compare(args)
    print(f"{'preset':<16}{'arch':<8}{'data':<16}{'numerics':<11}{'batch':>6}{'n_dis':>6}"
          f"{'G params':>10}{'D params':>10}{'img/s':>9}{'ms/iter':>9}"
          f"{'peak MiB':>10}")  # fmt: skip
    for preset in args.presets:
        r = _time_child(preset, args, args.overrides)
        if r is None:
            print(f"{preset:<16} failed")
            continue
        print(f"{preset:<16}{r['arch']:<8}{r['data']:<16}{r['precision']:<11}{r['batch']:>6}"
              f"{r['n_dis']:>6}{r['params_G']:>10,}{r['params_D']:>10,}{r['images_per_s']:>9.0f}"
              f"{r['ms_per_iteration']:>9.1f}{r['peak_mib']:>10.0f}")  # fmt: skip


def compare(args: argparse.Namespace) -> None:
    """Each preset's default (auto) beside every explicit setting, cells in turn."""
    names = args.explicit.split(",") if args.explicit else list(EXPLICIT)
    print("| preset | batch | auto chose | auto | " + " | ".join(names)
          + " | auto / best explicit | probe s |")  # fmt: skip
    print("|---|---|---|---|" + "---|" * len(names) + "---|---|")
    for preset in args.presets:
        auto = _time_child(preset, args, args.overrides)
        cells = {name: _time_child(preset, args, [*args.overrides, *EXPLICIT[name]])
                 for name in names}  # fmt: skip
        figures = {k: v["images_per_s"] for k, v in cells.items() if v}
        if auto is None or not figures:
            print(f"| {preset} | failed: see the errors above |", flush=True)
            continue
        best = max(figures.values())
        row = " | ".join(f"{figures[k]:.1f}" if k in figures else "failed" for k in names)
        print(f"| {preset} | {auto['batch']} | {auto['precision']} | {auto['images_per_s']:.1f} | "
              f"{row} | {auto['images_per_s'] / best:.2f} | {auto['probe_s']:.1f} |",
              flush=True)  # fmt: skip


BASELINES = sorted((SHARED / "baselines").glob("*.npz"))
METRICS = "fid10k,kid10k,pr10k,dc10k,census10k"


def score_line(name: str, source: str, n: int) -> str:
    """One table row: the digits-net scores of ``source`` against the MNIST test set."""
    from minmax.evaluate import evaluate

    metrics = METRICS.replace("10k", f"{n / 1000:g}k")
    r = {x["metric"].split("_")[0].rstrip("0123456789.k"): x for x in
         evaluate(source, str(MNIST), metrics, "digits", split="test")}  # fmt: skip
    census = r["census"]
    return (f"| {name} | {r['fd']['value']:.1f} | {r['kid']['value']:.1f} | "
            f"{r['pr']['precision']:.3f} / {r['pr']['recall']:.3f} | "
            f"{r['dc']['density']:.3f} / {r['dc']['coverage']:.3f} | "
            f"{census['classes_covered']}/10 | {census['kl_to_data']:.4f} |")  # fmt: skip


def score(args: argparse.Namespace) -> None:
    from minmax.machine import machine_summary

    print(f"# {machine_summary()}")
    print(f"# digits-net scores vs the MNIST test set (10,000 images), n = {args.n}")
    print("| samples | fd_digits | kid_digits | precision / recall | density / coverage "
          "| classes | KL to data |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    print(score_line("MNIST train set (the floor)", str(MNIST), args.n))
    for path in BASELINES:
        print(score_line(f"baseline {path.stem}", str(path), args.n))
    for path in args.samples:
        print(score_line(Path(path).stem, path, args.n))


def race(args: argparse.Namespace) -> None:
    """Train for ``--minutes`` of wall time, sample 10,000 images, score them."""
    from minmax.machine import machine_summary

    run = Path(args.out) / f"{args.preset}-{args.minutes:g}min"
    if run.exists():
        raise SystemExit(f"{run} exists: remove it or choose --out")
    cmd = ["minmax", "train", "--preset", args.preset, "--data", str(MNIST), "--out", str(run),
           "--quiet", f"train.max_minutes={args.minutes}", f"train.threads={args.threads}",
           *args.overrides]  # fmt: skip
    print(f"# {machine_summary()}", flush=True)
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    samples = run / "samples10k.npz"
    subprocess.run(["minmax", "sample", str(run), "--n", "10000", "--out", str(samples)],
                   check=True)  # fmt: skip
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    final = records[-1]
    chosen = next((r for r in records if r.get("kind") == "speed"), None)
    if chosen:
        layout = "NHWC" if chosen["channels_last"] else "NCHW"
        print(f"# auto chose {chosen['precision']} {layout}, adam {chosen['adam']}, "
              f"{chosen['threads']} threads; probe img/s {chosen['probe']}")  # fmt: skip
    print(f"# {args.preset}: {final['kimg']:.0f} kimg in {final['seconds']:.0f} s "
          f"({1000 * final['kimg'] / final['seconds']:.0f} img/s)")  # fmt: skip
    print("| samples | fd_digits | kid_digits | precision / recall | density / coverage "
          "| classes | KL to data |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    print(score_line(f"{args.preset}, {args.minutes:g} min", str(samples), 10000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--presets", nargs="+", default=IMAGE_PRESETS)
    s.add_argument("--steps", type=int, default=30)
    s.add_argument("--warmup", type=int, default=5)
    s.add_argument("--threads", type=int, default=0, help="torch threads (0: auto, as a run)")
    s.add_argument("--compare", action="store_true", help="auto beside fp32/bf16 × NCHW/NHWC")
    s.add_argument("--explicit", help=f"--compare's cells, from {','.join(EXPLICIT)}")
    s.add_argument("--budget-s", type=float, default=60.0, help="timing stops after this")
    s.add_argument("overrides", nargs="*", help="key=value overrides for every preset")
    r = sub.add_parser("race")
    r.add_argument("--preset", default="mnist-dcgan")
    r.add_argument("--minutes", type=float, default=10.0)
    r.add_argument("--threads", type=int, default=0, help="torch threads (0: auto, as a run)")
    r.add_argument("--out", default="runs/bench")
    r.add_argument("overrides", nargs="*", help="extra key=value overrides")
    c = sub.add_parser("score")
    c.add_argument("samples", nargs="*", help="more .npz files of samples to score")
    c.add_argument("--n", type=int, default=10000)
    t = sub.add_parser("_time")  # internal: one preset, in a fresh process
    t.add_argument("preset")
    t.add_argument("steps", type=int)
    t.add_argument("warmup", type=int)
    t.add_argument("threads", type=int)
    t.add_argument("--budget-s", type=float, default=60.0)
    t.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    if args.command == "_time":
        timed = time_preset(args.preset, args.steps, args.warmup, args.threads, args.overrides,
                            args.budget_s)  # fmt: skip
        print(json.dumps(timed))
    elif args.command == "speed":
        speed(args)
    elif args.command == "race":
        race(args)
    else:
        score(args)


if __name__ == "__main__":
    main()
