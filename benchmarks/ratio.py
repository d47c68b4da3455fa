"""D* = log P/Q at work: calibrate a run's D, then correct its samples (DRS, MH, SIR).

Usage: python benchmarks/ratio.py [--seeds 10] [--parts toys points mnist] [--train-kimg 400] ...
       [--datasets m15-2d ...] [--units user scaled] [key=value ...]   (toy/points overrides)

Toys (PacGAN's 2-D ring and grid): per seed, a short run of the preset (``--train-kimg``:
short on purpose, so G is imperfect and there is something to correct), ``calibrate`` for
``--calibrate-kimg``, then 2,500 samples uncorrected and by each correction, scored by the
VEEGAN/PacGAN protocol (``mode_report``: modes captured, % high quality, reverse KL).
Points (issue 22's toy correction): users' mixtures from ``benchmarks/points.py``, each
trained with the points defaults for a length that leaves G good but imperfect (``POINTS_KIMG``:
about 90-97% high quality), calibrated with ``minmax calibrate``'s default budget, then
corrected; per method the share of G's non-HQ samples removed, raw and above P's own (a
sample of P itself is HQ 99.0% of the time in 2-D and 97.1% in 3-D: no sampler of P does
better), and the modes kept.
MNIST: a ``--mnist-minutes`` mnist-dcgan run (or ``--mnist-run RUN``, an existing run: a
class-conditional one is corrected class by class), calibrated on the test split's first half
(a fresh calibration of RUN is kept), ``--mnist-n`` (5,000) samples per correction scored with
the digits feature net against the test split (``fd5k_digits``, ``census5k``). Every row
gives the acceptance rate and the cost: G evaluations per kept sample and wall seconds.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from minmax.config import resolve
from minmax.data import resolve_toy
from minmax.errors import UsageError
from minmax.machine import machine_summary
from minmax.metrics import mode_report
from minmax.ratio import CalibrationConfig, calibrate, sample_corrected
from minmax.sample import load_generator
from minmax.train.loop import train

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "mnist.npz"
# (row label, method, options); "drs" is γ = 0, "drs@t" has γ set for acceptance rate t.
TOY_METHODS = [("none", "none", {}), ("drs", "drs", {}), ("drs@0.1", "drs", {"accept_target": 0.1}),
               ("mh", "mh", {}), ("sir", "sir", {})]  # fmt: skip


def toy_seed(preset: str, seed: int, args) -> tuple[dict, dict]:
    """Train, calibrate and correct one seed; {method: scores} and the calibration summary."""
    overrides = [*args.overrides, f"train.seed={seed}", f"train.kimg={args.train_kimg}"]
    cfg = resolve(preset, overrides=[*overrides, "eval.plots=false"])
    mixture = resolve_toy(cfg.data.name)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        start = time.monotonic()
        train(cfg, run, progress=False)
        train_s = time.monotonic() - start
        cal = calibrate(run, CalibrationConfig(kimg=args.calibrate_kimg, seed=seed, n_eval=5000))
        for label, method, options in TOY_METHODS:
            try:
                x, _, stats = sample_corrected(run, method, args.n, seed + 1, **options)
            except UsageError as err:  # drs at γ = 0 gives up when D_M is an outlier
                print(f"  {label}: {err}", flush=True)
                continue
            report = mode_report(x, mixture)
            rows[label] = {
                "modes": report.modes_captured,
                "n_modes": report.n_modes,
                "hq": report.hq_fraction,
                "kl": report.reverse_kl,
                "accept": stats.acceptance_rate,
                "cost": stats.g_evals_per_sample,
                "seconds": stats.seconds,
            }
    summary = {
        "train_s": train_s,
        "calibrate_s": cal.seconds,
        "v_d": cal.v_d.value,
        "v_d_before": cal.v_d_before,
        "jsd_bound": cal.divergences["jsd_bound"].value,
        "jsd_ref": cal.divergences["jsd_bound"].reference,
    }
    return rows, summary


def toys(args) -> None:
    for preset in args.presets:
        per_method: dict[str, list[dict]] = {label: [] for label, _, _ in TOY_METHODS}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rows, cal = toy_seed(preset, seed, args)
            print(
                f"{preset} seed {seed}: train {cal['train_s']:.0f} s, calibrate "
                f"{cal['calibrate_s']:.0f} s, V_D {cal['v_d_before']:.3f} -> {cal['v_d']:.3f}, "
                f"JSD bound {cal['jsd_bound']:.3f} (P exact, Q_G by KDE: "
                f"{cal['jsd_ref']:.3f})",
                flush=True,
            )
            for method, r in rows.items():
                per_method[method].append(r)
                print(
                    f"  {method:<8} modes {r['modes']}/{r['n_modes']}  HQ {100 * r['hq']:.1f}%"
                    f"  rev-KL {r['kl']:.3f}  accept {100 * r['accept']:.1f}%"
                    f"  G evals/sample {r['cost']:.1f}  {r['seconds']:.2f} s",
                    flush=True,
                )
        print(
            f"\n{preset}, {args.seeds} seeds, train.kimg={args.train_kimg}, calibrate "
            f"{args.calibrate_kimg} kimg, {args.n} samples each: mean (worst)"
        )
        print("| method | modes | HQ % | rev-KL | acceptance % | G evals/sample | seconds |")
        print("|---|---|---|---|---|---|---|")
        for method, rs in per_method.items():
            if len(rs) < args.seeds:
                method += f" ({len(rs)} of {args.seeds} seeds)"
            if not rs:
                print(f"| {method} | gave up | | | | | |")
                continue
            modes, hq, kl = [r["modes"] for r in rs], [r["hq"] for r in rs], [r["kl"] for r in rs]
            print(
                f"| {method} | {statistics.mean(modes):.1f} ({min(modes)})/{rs[0]['n_modes']} "
                f"| {100 * statistics.mean(hq):.1f} ({100 * min(hq):.1f}) "
                f"| {statistics.mean(kl):.3f} ({max(kl):.3f}) "
                f"| {100 * statistics.mean(r['accept'] for r in rs):.1f} "
                f"| {statistics.mean(r['cost'] for r in rs):.1f} "
                f"| {statistics.mean(r['seconds'] for r in rs):.2f} |",
                flush=True,
            )
        print()


# Training length per mixture (kimg, points defaults otherwise): G at about 90-97% HQ, chosen
# on seed 0 of each; every seed is reported, the targets judged on those inside the band.
POINTS_KIMG = {"m5-2d": 250, "m15-2d": 250, "m25-2d": 250, "m40-2d": 300, "m8-3d": 400,
               "m10-3d": 400, "m30-3d": 500, "m40-3d": 500}  # fmt: skip
POINTS_BAND = (0.90, 0.97)
POINTS_METHODS = [*TOY_METHODS[:3], ("mh", "mh", {}), ("sir", "sir", {})]


def removed(hq: float, hq0: float, floor: float = 1.0) -> float:
    """The share of G's non-HQ samples a correction removed; ``floor`` = P's own HQ share
    gives the share of the excess over P's removed (1 = a sampler as good as P)."""
    return 1 - (floor - hq) / (floor - hq0) if floor > hq0 else float("nan")


def points_seed(path: Path, mixture, seed: int, kimg: float, args, workdir: Path) -> dict:
    """``minmax train --data PATH`` for ``kimg``, default calibration, every correction."""
    from points import train_and_score

    overrides = [f"train.kimg={kimg}", "eval.plots=false", *args.overrides]
    base = train_and_score(path, mixture, seed, overrides, workdir)
    run = workdir / f"{path.stem}-seed{seed}"
    cal = calibrate(run, CalibrationConfig(kimg=args.points_calibrate_kimg, seed=seed))
    rows = {}
    for label, method, options in POINTS_METHODS:
        try:
            x, _, stats = sample_corrected(run, method, args.n, seed + 1, **options)
        except UsageError as err:
            print(f"  {label}: {err}", flush=True)
            continue
        report = mode_report(x, mixture)
        rows[label] = {"modes": report.modes_captured, "hq": report.hq_fraction,
                       "kl": report.reverse_kl, "accept": stats.acceptance_rate,
                       "cost": stats.g_evals_per_sample}  # fmt: skip
    return {"rows": rows, "wall": base["wall"], "calibrate_s": cal.seconds,
            "v_d": (cal.v_d_before, cal.v_d.value)}  # fmt: skip


def points_part(args) -> None:
    from points import DATASETS, build_mixture, in_units, reference, write_points

    specs = {d.name: d for d in DATASETS}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.datasets:
            spec, kimg = specs[name], args.points_kimg or POINTS_KIMG[name]
            floor = statistics.fmean(reference(build_mixture(spec), seeds)["hq"])
            for units in args.units:
                mixture = in_units(build_mixture(spec), units)
                path = write_points(mixture, Path(tmp) / f"{name}-{units}.npy", spec.seed)
                per_seed = []
                for seed in seeds:
                    result = points_seed(path, mixture, seed, kimg, args, Path(tmp))
                    per_seed.append(result)
                    line = "  ".join(
                        f"{k} {r['modes']}/{spec.n_modes} {100 * r['hq']:.2f}%"
                        for k, r in result["rows"].items()
                    )
                    print(f"{name} {units} seed {seed} ({kimg} kimg, train {result['wall']:.0f}"
                          f" s, calibrate {result['calibrate_s']:.0f} s, V_D "
                          f"{result['v_d'][0]:.3f} -> {result['v_d'][1]:.3f}): {line}",
                          flush=True)  # fmt: skip
                _points_table(name, units, spec.n_modes, kimg, floor, per_seed)


def _points_table(name, units, n_modes, kimg, floor, per_seed) -> None:
    inside = [r for r in per_seed
              if POINTS_BAND[0] <= r["rows"]["none"]["hq"] <= POINTS_BAND[1]]  # fmt: skip
    print(f"\n{name} ({units} units), {kimg} kimg: {len(inside)} of {len(per_seed)} seeds with "
          f"G at {100 * POINTS_BAND[0]:.0f}-{100 * POINTS_BAND[1]:.0f}% HQ (P itself: "
          f"{100 * floor:.2f}%); mean (worst) over those")  # fmt: skip
    print("| method | modes lost | HQ % | non-HQ removed % | excess over P removed % | rev-KL "
          "| acceptance % | G evals/sample |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
    for label, _, _ in POINTS_METHODS:
        got = [(r["rows"][label], r["rows"]["none"]) for r in inside if label in r["rows"]]
        if not got:
            print(f"| {label} | gave up | | | | | | |")
            continue
        lost = [none["modes"] - c["modes"] for c, none in got]
        raw = [removed(c["hq"], none["hq"]) for c, none in got]
        excess = [removed(c["hq"], none["hq"], floor) for c, none in got]
        hq, kl = [c["hq"] for c, _ in got], [c["kl"] for c, _ in got]
        print(f"| {label}{'' if len(got) == len(inside) else f' ({len(got)} seeds)'} "
              f"| {max(lost)} | {100 * statistics.fmean(hq):.2f} ({100 * min(hq):.2f}) "
              f"| {100 * statistics.fmean(raw):.0f} ({100 * min(raw):.0f}) "
              f"| {100 * statistics.fmean(excess):.0f} ({100 * min(excess):.0f}) "
              f"| {statistics.fmean(kl):.4f} ({max(kl):.4f}) "
              f"| {100 * statistics.fmean(c['accept'] for c, _ in got):.1f} "
              f"| {statistics.fmean(c['cost'] for c, _ in got):.1f} |", flush=True)  # fmt: skip


def mnist_run(args, tmp: Path) -> Path:
    """``--mnist-run`` as given, or a fresh ``--mnist-minutes`` unconditional mnist-dcgan run."""
    if args.mnist_run:
        return Path(args.mnist_run)
    cfg = resolve(
        "mnist-dcgan",
        overrides=[
            f"data.name={MNIST}",
            "model.conditional=false",  # as measured in docs/ratio.md, before the preset had labels
            f"train.max_minutes={args.mnist_minutes}",
            "train.kimg=100000",
            "eval.plots=false",
        ],
    )
    run = tmp / "run"
    summary = train(cfg, run, progress=False)
    print(f"mnist-dcgan: {summary['kimg']:.0f} kimg in {summary['seconds']:.0f} s", flush=True)
    return run


def corrected(run: Path, n_classes: int, method: str, n: int, options: dict):
    """n corrected samples; a class-conditional model (``n_classes`` > 0) is corrected class
    by class (its D is log p(x|y)/q(x|y)), n / classes each: counts, proposals and seconds
    summed over the classes, acceptance rates averaged."""
    from minmax.ratio.correct import CorrectionStats

    if not n_classes:
        return sample_corrected(run, method, n, 1, **options)
    parts = [sample_corrected(run, method, n // n_classes, 1 + k, class_index=k, **options)
             for k in range(n_classes)]  # fmt: skip
    stats = [p[2] for p in parts]  # equal n per class: the mean rate is the pooled one
    total = CorrectionStats(method, sum(s.n_kept for s in stats),
                            sum(s.n_proposed for s in stats),
                            statistics.fmean(s.acceptance_rate for s in stats),
                            sum(s.seconds for s in stats))  # fmt: skip
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), total


def mnist(args) -> None:
    from minmax.evaluate import ImageSet, load_extractor, parse_metrics, score_images
    from minmax.images import to_uint8
    from minmax.ratio.calibrate import load_calibrated

    extractor = load_extractor("digits")
    n_k = f"{args.mnist_n // 1000}k"
    specs = parse_metrics(f"fid{n_k},census{n_k}")
    with tempfile.TemporaryDirectory() as tmp:
        run = mnist_run(args, Path(tmp))
        G = load_generator(run, "G_ema")
        n_classes = getattr(G, "n_classes", 0)
        try:
            _, meta = load_calibrated(run, G)
            print(f"{run}: calibration kept ({meta.get('kimg', '?')} kimg)", flush=True)
        except UsageError:
            cal = calibrate(run, CalibrationConfig(kimg=args.mnist_calibrate_kimg, n_eval=5000))
            print(
                f"{run}: calibrate {cal.kimg:g} kimg in {cal.seconds:.0f} s on "
                f"{cal.data['note']}; held-out V_D {cal.v_d_before:.3f} -> {cal.v_d.value:.3f}, "
                f"JSD bound {cal.divergences['jsd_bound'].value:.3f}",
                flush=True,
            )
        print(
            f"| method | fd{n_k}_digits | classes covered | census KL | acceptance % "
            "| G evals/sample | seconds |"
        )
        print("|---|---|---|---|---|---|---|")
        # drs at γ = 0 needs e^{D_M} G calls per sample, ~180 on a 10-minute run: too slow here.
        methods = [("none", "none", {}),
                   (f"drs@{args.mnist_accept_target:g}", "drs",
                    {"accept_target": args.mnist_accept_target}),
                   (f"mh (chain {args.mnist_chain_length})", "mh",
                    {"chain_length": args.mnist_chain_length}),
                   ("sir", "sir", {})]  # fmt: skip
        for label, method, options in methods:
            x, y, stats = corrected(run, n_classes, method, args.mnist_n, options)
            fake = ImageSet(to_uint8(x), y, f"mnist-dcgan {label}")
            fd, c = score_images(fake, str(MNIST), specs, extractor, 0, split="test")
            print(
                f"| {label} | {fd['value']:.2f} | {c['classes_covered']}/{c['n_classes']} "
                f"| {c['kl_to_data']:.4f} | {100 * stats.acceptance_rate:.1f} "
                f"| {stats.g_evals_per_sample:.1f} | {stats.seconds:.1f} |",
                flush=True,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["toys", "mnist"],
                        choices=["toys", "points", "mnist"])  # fmt: skip
    parser.add_argument("--presets", nargs="+", default=["ring", "grid"])
    parser.add_argument("--datasets", nargs="+", default=list(POINTS_KIMG),
                        choices=list(POINTS_KIMG), help="points part: mixtures")  # fmt: skip
    parser.add_argument("--points-calibrate-kimg", type=float,
                        help="points part: calibration budget (default: minmax calibrate's)")
    parser.add_argument("--points-kimg", type=float,
                        help="points part: train each mixture this long (default: POINTS_KIMG)")
    parser.add_argument("--units", nargs="+", default=["user"], choices=["user", "scaled"],
                        help="points part: the unit box or x1000 and shifted")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--train-kimg", type=float, default=400)
    parser.add_argument("--calibrate-kimg", type=float, default=500)
    parser.add_argument("--n", type=int, default=2500, help="toy samples per method")
    parser.add_argument("--mnist-minutes", type=float, default=3.0)
    parser.add_argument("--mnist-calibrate-kimg", type=float, default=50)
    parser.add_argument("--mnist-n", type=int, default=5000)
    parser.add_argument("--mnist-accept-target", type=float, default=0.1)
    parser.add_argument("--mnist-chain-length", type=int, default=20)
    parser.add_argument(
        "--mnist-run",
        help="an existing image run to correct (no training); "
        "class-conditional runs are corrected class by class",
    )
    parser.add_argument("overrides", nargs="*", help="key=value for the toy and points runs")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(
        f"# {date.today()}  {platform.processor() or platform.machine()}  "
        f"threads={torch.get_num_threads()}  torch {torch.__version__}  "
        f"python {platform.python_version()}"
    )
    print(f"# {machine_summary()}")
    print(f"# {' '.join(sys.argv)}", flush=True)
    start = time.monotonic()
    if "toys" in args.parts:
        toys(args)
    if "points" in args.parts:
        points_part(args)
    if "mnist" in args.parts:
        mnist(args)
    print(f"# total wall {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
