"""Small data and fine-tuning (issue 19): does augmentation rescue a few thousand digits, and
does starting from another run save time?

    python benchmarks/small_data.py limited --sizes 1000 5000 --arms none diffaugment ada
    python benchmarks/small_data.py limited --sizes 60000 --arms none ada
    python benchmarks/small_data.py finetune --pretrain-minutes 5 --minutes 10
    python benchmarks/small_data.py floor --sizes 1000 5000 60000
    python benchmarks/small_data.py overfit /tmp/minmax-small-data/1000-none-seed0 ...

``limited``: for each size, the first N digits of a seeded permutation of MNIST's training set
(../shared/data/mnist.npz) go into an .npz beside the full test set; ``minmax train --preset
mnist-dcgan model.conditional=false`` (``--preset P`` for another) trains on it for
``--minutes`` of wall time, once per arm
(``none``; ``diffaugment``: ``augment.policy=color,translation,cutout``, DiffAugment's
limited-data policy; ``ada``: ``augment.ada=true`` with its defaults), and the run's final
evaluation scores 10,000 G_ema samples: fd10k_digits against the whole test set and
mem10k_digits (the memorisation check: distances to the N training digits against the test
set's), and how well D tells its training digits from held-out ones (``d_overfit``; also
``overfit RUN ...`` for runs already trained). One JSON line per run, then a table.

``finetune``: a run trained ``--pretrain-minutes`` on digits 0-4, then ``--init-from`` it on
digits 5-9 with an evaluation every ``--eval-kimg`` (its time counts against the fine-tuned
run, so its times are upper bounds), against a from-scratch run on 5-9 for ``--minutes``.
Reported: the scratch run's final fd10k_digits, and the fine-tuned run's wall seconds when it
first scored at or below it. Both score against the test set's digits 5-9.

Needs the digits network (``minmax features train --data ../shared/data/mnist.npz``). Run
with nothing else on the machine: the runs are wall-time races.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist.npz"
ARMS = {
    "none": [],
    "diffaugment": ["augment.policy=color,translation,cutout"],
    "ada": ["augment.ada=true"],
}
PRESET = "mnist-dcgan"  # the issue's; --preset mnist-uncond for the unconditional recipe


def subset_rows(total: int, n: int, seed: int) -> np.ndarray:
    """Which of ``total`` training digits form the ``n``-digit subset: the first ``n`` of a
    seeded permutation (``limited`` trains on them, ``floor`` scores them)."""
    return np.random.default_rng(seed).permutation(total)[:n]


def write_subset(path: Path, n: int, seed: int) -> None:
    """The first ``n`` of a seeded permutation of MNIST's training digits, plus the full test
    split (the reference and the held-out set for the memorisation check)."""
    with np.load(MNIST, allow_pickle=False) as f:
        x, y, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
    keep = subset_rows(len(x), n, seed)
    np.savez(path, x_train=x[keep], y_train=y[keep], x_test=x_test, y_test=y_test)


def write_digits(path: Path, digits: list[int]) -> None:
    """MNIST's train and test splits restricted to ``digits``."""
    with np.load(MNIST, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    train, test = np.isin(arrays["y_train"], digits), np.isin(arrays["y_test"], digits)
    np.savez(path, x_train=arrays["x_train"][train], y_train=arrays["y_train"][train],
             x_test=arrays["x_test"][test], y_test=arrays["y_test"][test])  # fmt: skip


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def train(
    run: Path, data: Path, overrides: list[str], extra: list[str] = (), preset: str = PRESET
) -> dict:
    """``minmax train --preset preset`` into ``run`` (which must not exist); its final record."""
    if run.exists():
        raise SystemExit(f"{run} exists: remove it or choose --out")
    cmd = ["minmax", "train", "--preset", preset, "--quiet", "--data", str(data),
           "--out", str(run), *extra, "model.conditional=false", *overrides]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return records(run)[-1]


def metric(run: Path, prefix: str) -> dict:
    """The run's last score whose metric name starts with ``prefix``."""
    scores = [r for r in records(run) if r.get("kind") == "eval" and r["metric"].startswith(prefix)]
    if not scores:
        raise SystemExit(f"no {prefix} score in {run / 'metrics.jsonl'}")
    return scores[-1]


def d_overfit(run: Path, data: Path) -> dict:
    """How well the run's D tells its training digits from held-out ones: the AUC of its
    logits on (up to 10,000) training digits against the 10,000 test digits, 0.5 when it
    cannot, 1.0 when every training digit scores above every held-out one (the ADA paper's
    overfitting, seen from held-out data; offset-free, so it reads the same under RpGAN). D
    runs in training mode on batches of 64 real digits, as it saw them in training. Also the
    shares of training and held-out digits it calls real (logit > 0; under RpGAN, whose
    logits drift by a constant, only the AUC means anything)."""
    import torch

    from minmax.metrics.memorisation import mann_whitney_u
    from minmax.ratio.run import load_run_discriminator

    D, _ = load_run_discriminator(run)
    D.train()  # batch-norm on batch statistics, as in training (the module is a copy)

    def logits(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([D(torch.from_numpy(x[i : i + 64, None]).float() / 127.5 - 1)
                              for i in range(0, len(x), 64)]).numpy()  # fmt: skip

    with np.load(data, allow_pickle=False) as f:
        seen, held_out = logits(f["x_train"][:10_000]), logits(f["x_test"])
    auc = mann_whitney_u(seen, held_out) / (len(seen) * len(held_out))
    return {"auc": auc, "seen_real": (seen > 0).mean(), "held_out_real": (held_out > 0).mean()}


def limited(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        data = out / f"mnist-{n}.npz"
        if not data.exists():
            write_subset(data, n, args.data_seed)
        for arm in args.arms:
            run = out / f"{n}-{arm}-seed{args.seed}"
            overrides = [f"train.max_minutes={args.minutes}", f"train.seed={args.seed}",
                         "eval.metrics=fid10k,mem10k", *ARMS[arm],
                         *args.overrides]  # fmt: skip
            final = train(run, data, overrides, preset=args.preset)
            fd, mem = metric(run, "fd"), metric(run, "mem")
            p = [r["ada_p"] for r in records(run) if "ada_p" in r]
            row = {"size": n, "arm": arm, "seed": args.seed, "kimg": round(final["kimg"], 1),
                   "seconds": final["seconds"], "fd10k_digits": round(fd["value"], 2),
                   "mem_ratio": round(mem["ratio"], 3), "mem_close": round(mem["close_share"], 4),
                   "mem_verdict": mem["verdict"], "ada_p_final": p[-1] if p else None,
                   "ada_p_max": max(p) if p else None,
                   "d_overfit_auc": round(d_overfit(run, data)["auc"], 3)}  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("| digits | augmentation | kimg | fd10k_digits | memorisation ratio | close share "
          "| verdict | ADA p (end / max) | D's AUC, training vs held-out digits |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        p = "" if r["ada_p_final"] is None else f"{r['ada_p_final']:.2f} / {r['ada_p_max']:.2f}"
        print(f"| {r['size']:,} | {r['arm']} | {r['kimg']:.0f} | {r['fd10k_digits']:.1f} | "
              f"{r['mem_ratio']:.3f} | {100 * r['mem_close']:.1f}% | {r['mem_verdict']} | {p} | "
              f"{r['d_overfit_auc']:.3f} |")


def overfit(args: argparse.Namespace) -> None:
    """``d_overfit`` of runs already trained by ``limited`` (their data from their config)."""
    from minmax.ratio.run import load_run_config

    print("| run | D's AUC, training vs held-out digits | called real: training / held-out |")
    print("|---|---|---|")
    for run in map(Path, args.runs):
        data = Path(load_run_config(run).data.name)
        d = d_overfit(run, data)
        print(f"| {run.parent.name}/{run.name} | {d['auc']:.3f} | "
              f"{100 * d['seen_real']:.1f}% / {100 * d['held_out_real']:.1f}% |", flush=True)


def finetune(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    low, high = out / "digits-0-4.npz", out / "digits-5-9.npz"
    write_digits(low, [0, 1, 2, 3, 4])
    write_digits(high, [5, 6, 7, 8, 9])
    common = [f"train.seed={args.seed}", *args.overrides]
    metrics = "eval.metrics=fid10k"
    scratch = train(out / "scratch-5-9", high, [f"train.max_minutes={args.minutes}", metrics,
                                                *common])  # fmt: skip
    target = metric(out / "scratch-5-9", "fd")["value"]
    print(json.dumps({"run": "scratch 5-9", "minutes": args.minutes, "kimg": scratch["kimg"],
                      "fd10k_digits": round(target, 2)}), flush=True)  # fmt: skip
    source = out / "pretrain-0-4"
    train(source, low, [f"train.max_minutes={args.pretrain_minutes}", *common])
    tuned = out / "finetune-5-9"
    train(tuned, high, [f"train.max_minutes={args.minutes / 2}", metrics,
                        f"eval.every_kimg={args.eval_kimg}", *common],
          ["--init-from", str(source)])  # fmt: skip
    # (seconds, kimg, fd) of each in-training score; its time is the next logged time after
    # it (the score's own minutes included), so "reached by" is an upper bound
    log, curve = records(tuned), []
    for i, r in enumerate(log):
        if r.get("kind") == "eval" and r["metric"].startswith("fd"):
            seconds = next(x["seconds"] for x in log[i:] if "seconds" in x)
            curve.append((seconds, r["kimg"], r["value"]))
    reached = next(((s, k) for s, k, v in curve if v <= target), None)
    for s, k, v in curve:
        print(json.dumps({"run": "finetune 5-9", "seconds": s, "kimg": round(k, 1),
                          "fd10k_digits": round(v, 2)}))  # fmt: skip
    verdict = ("not reached" if reached is None else
               f"reached at <= {reached[0]:.0f} s ({reached[1]:.0f} kimg)")  # fmt: skip
    print(f"# scratch on 5-9 in {args.minutes:g} min: fd10k_digits {target:.2f}; fine-tuned "
          f"from {args.pretrain_minutes:g} min on 0-4: {verdict}; half the time is "
          f"{30 * args.minutes:.0f} s")


def floor(args: argparse.Namespace) -> None:
    """What a G that reproduced its N training digits exactly would score: 10,000 draws (with
    repetition) of the subset ``limited`` trains on, fd10k_digits against the test set."""
    import torch

    from minmax.metrics.features.digits import default_digits_path, load_digits
    from minmax.metrics.frechet import frechet_distance_features

    extractor = load_digits(default_digits_path())
    with np.load(MNIST, allow_pickle=False) as f:
        x, x_test = f["x_train"], f["x_test"]
    test = extractor.features(torch.from_numpy(x_test[:, None]))
    print("| training digits | fd10k_digits of the digits themselves |\n|---|---|")
    for n in args.sizes:
        subset = x[subset_rows(len(x), n, args.data_seed)]
        draws = subset[np.random.default_rng(1).integers(0, n, 10_000)]
        fd = frechet_distance_features(test, extractor.features(torch.from_numpy(draws[:, None])))
        print(f"| {n:,} | {fd:.2f} |")


def main() -> None:
    from minmax.machine import machine_summary

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lim = sub.add_parser("limited")
    lim.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    lim.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    lim.add_argument("--data-seed", type=int, default=0, help="which digits form the subset")
    lim.add_argument("--preset", default=PRESET, help="trained with model.conditional=false")
    low = sub.add_parser("floor", help="the score of the training subsets themselves")
    low.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 60000])
    low.add_argument("--data-seed", type=int, default=0)
    over = sub.add_parser("overfit", help="D's overfitting in runs 'limited' trained")
    over.add_argument("runs", nargs="+")
    fine = sub.add_parser("finetune")
    fine.add_argument("--pretrain-minutes", type=float, default=5.0)
    fine.add_argument("--eval-kimg", type=float, default=25.0)
    for p in (lim, fine):
        p.add_argument("--minutes", type=float, default=10.0)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", default="/tmp/minmax-small-data")
        p.add_argument("--set", dest="overrides", action="append", default=[],
                       help="key=value override for every run (repeatable)")
    args = parser.parse_args()
    if not MNIST.is_file():
        raise SystemExit(f"needs {MNIST}")
    print(f"# {machine_summary()}", flush=True)
    commands = {"limited": limited, "finetune": finetune, "floor": floor, "overfit": overfit}
    commands[args.command](args)


if __name__ == "__main__":
    main()
