"""The ``minmax`` command: a thin layer over the library.

Errors in what the user asked for (UsageError) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import shutil
import sys
from pathlib import Path

from minmax.errors import DivergenceError, UsageError

EXAMPLES = """examples:
  minmax train                                   # the default experiment: the 2-D ring
  minmax train --preset grid train.seed=3        # PacGAN's 2-D grid, another seed
  minmax train --data points.csv --out runs/mine # your own N×d points
  minmax train --dry-run loss.objective=hinge    # print the resolved config
  minmax train --resume runs/00000-ring train.kimg=2000
  minmax train --init-from runs/00001-mnist-dcgan --data new.npz train.freeze_d=1  # fine-tune
  minmax sample runs/00000-ring --n 2500 --out samples.npz
  minmax train --preset mnist-dcgan --data ../shared/data/mnist.npz train.max_minutes=10
  minmax sample runs/00001-mnist-dcgan --n 10000 --out x.npz
  minmax interpolate runs/00001-mnist-dcgan --out walk.gif
  minmax export runs/00001-mnist-dcgan --out mnist-gan --license mit --onnx
  minmax theory                                  # check the founding text's claims
  minmax calibrate runs/00000-ring               # fit D ~ log P/Q_G beside the run
  minmax sample runs/00000-ring --correct drs --out drs.png
  minmax diagnose runs/00000-ring                # what G under-covers (largest D)
  minmax diagnose runs/00001-mnist-dcgan --memorisation  # does G copy training images?
  minmax env                                     # versions, CPU flags, what auto picks here
  minmax report runs/00000-ring                  # one HTML page of the run (report.html)
"""


NETWORK_HELP = "G_ema (default) or G; an export holds one network"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's errors are usage errors too
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="minmax",
        description="Train GANs; check their theory on known densities.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = sub.add_parser(
        "train",
        help="train a GAN",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = train.add_mutually_exclusive_group()
    source.add_argument("--preset", help="a named preset (default: ring); see --list-presets")
    source.add_argument("--config", help="a YAML config file")
    train.add_argument("--data", help="dataset name or a .npy/.npz/.csv points file")
    train.add_argument("--out", help="run folder (default: runs/NNNNN-PRESET)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoint")
    train.add_argument(
        "--init-from",
        metavar="RUN_OR_EXPORT",
        help="fine-tune: a new run starting from this run's (or export's) weights; its config "
        "is the default base",
    )
    train.add_argument("--dry-run", action="store_true", help="print the resolved config, exit")
    train.add_argument("--list-presets", action="store_true", help="list presets and exit")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.lr_d=1e-4"
    )

    sample = sub.add_parser("sample", help="draw samples from a trained generator")
    sample.add_argument("run_dir", metavar="RUN_DIR")
    sample.add_argument("--n", type=int, default=2500, help="number of samples (default 2500)")
    sample.add_argument(
        "--out",
        required=True,
        help="images: .png (grid), .npz (uint8 x, labels y) or a folder (one PNG each); "
        "points: .png (plot), .npy or .npz",
    )
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--network", choices=["G_ema", "G"], help=NETWORK_HELP)
    sample.add_argument(
        "--class", dest="class_index", type=int, help="class-conditional: one class"
    )
    sample.add_argument("--truncation", type=float, help="redraw |z| entries above this")
    sample.add_argument(
        "--correct", choices=["drs", "mh", "sir"], help="reweight by D: run 'calibrate' first"
    )
    sample.add_argument("--accept-target", type=float, help="drs: in (0, 1]; default γ = 0")
    sample.add_argument("--chain-length", type=int, default=50, help="mh: proposals per sample")
    sample.add_argument("--pool-factor", type=int, default=10, help="sir: pool size per sample")

    cal = sub.add_parser("calibrate", help="fine-tune a copy of D on V_D: D ~ log P/Q_G")
    cal.add_argument("run_dir", metavar="RUN_DIR")
    cal.add_argument("--kimg", type=float, help="budget: real samples (1000s); default 20 "
                     "passes over the rows D fits, 100 to 500")  # fmt: skip
    cal.add_argument("--lr", type=float, help="Adam step size (default: the run's train.lr_d)")
    cal.add_argument("--batch-size", type=int, help="default: the run's train.batch_size")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--network", default="G_ema", choices=["G_ema", "G"])
    cal.add_argument("--n-eval", type=int, default=10_000, help="held-out samples of P and Q")

    diag = sub.add_parser("diagnose", help="which real samples, classes, modes G under-covers")
    diag.add_argument("run_dir", metavar="RUN_DIR")
    diag.add_argument("--out", help="folder for the PNG and diagnose.json (RUN_DIR/diagnose)")
    diag.add_argument("--n", type=int, default=5000,
                      help="held-out real samples to rank (--memorisation: generated and "
                      "held-out images each)")  # fmt: skip
    diag.add_argument("--seed", type=int, default=0)
    diag.add_argument(
        "--memorisation",
        action="store_true",
        help="instead: does G copy its training images? (--n generated vs held-out images)",
    )
    diag.add_argument("--features", help="--memorisation: inception, digits or a digits-net file "
                      "(default: the run's eval.features)")  # fmt: skip
    diag.add_argument("--calibrate-kimg", type=float,
                      help="a run without a calibrated D is calibrated first, this long "
                      "(thousands of images; default: as 'minmax calibrate')")  # fmt: skip
    diag.add_argument("--uncalibrated", action="store_true",
                      help="use the training D as it is (overconfident: coverage biased)")

    walk = sub.add_parser("interpolate", help="a latent walk as an image strip and a GIF/WebP")
    walk.add_argument("run_dir", metavar="RUN_DIR")
    walk.add_argument("--out", default="walk.gif", help=".gif or .webp (a .png strip beside it)")
    walk.add_argument("--points", type=int, default=4, help="key points on the loop (default 4)")
    walk.add_argument("--steps", type=int, default=16, help="frames between key points")
    walk.add_argument("--seed", type=int, default=0)
    walk.add_argument("--class", dest="class_index", type=int, help="class-conditional: one class")
    walk.add_argument("--network", choices=["G_ema", "G"], help=NETWORK_HELP)

    export = sub.add_parser(
        "export", help="a trained G as a standalone folder: weights, config.json, model card"
    )
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--out", required=True, help="a new (or empty) folder")
    export.add_argument("--network", default="G_ema", choices=["G_ema", "G"])
    export.add_argument("--license", help="the card's license id, e.g. mit (default: other)")
    export.add_argument("--onnx", action="store_true", help="also model.onnx (minmax[onnx])")

    ev = sub.add_parser("evaluate", help="score generated images: FID, KID, IS, P/R, D/C")
    ev.add_argument("generated", metavar="SOURCE", help="run folder, .npz of images or folder")
    ev.add_argument(
        "--ref", required=True, help="dataset name, image folder, .npz, or cached statistics"
    )
    ev.add_argument("--split", default="train", help="reference split (named datasets)")
    ev.add_argument("--metrics", default="fid10k", help="e.g. fid10k,kid10k,is10k,pr10k,dc10k")
    ev.add_argument("--n", type=int, help="generated images for every metric (overrides)")
    ev.add_argument(
        "--features", default="inception", help="inception, digits, or a digits-net file"
    )
    ev.add_argument("--inception-weights", help="pt_inception-2015-12-05-6726825d.pth")
    ev.add_argument("--data-root", help="where dataset files are (default ~/.cache/minmax)")
    ev.add_argument("--seed", type=int, default=0)

    feats = sub.add_parser("features", help="train a dataset-specific feature network")
    feats_sub = feats.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    ft = feats_sub.add_parser("train", help="train the digits classifier for fd/kid scores")
    ft.add_argument("--data", default="mnist", help="mnist, fashion-mnist or a Keras .npz")
    ft.add_argument("--data-root", help="where dataset files are (default ~/.cache/minmax)")
    ft.add_argument("--out", help="weights file (default: the cache's digits-<data>)")
    ft.add_argument("--epochs", type=int, default=4)
    ft.add_argument("--seed", type=int, default=0)

    report = sub.add_parser("report", help="one self-contained HTML page of a run")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.add_argument("--out", help="the HTML file (default: RUN_DIR/report.html)")

    env = sub.add_parser("env", help="versions, CPU/GPU, and what auto settings choose here")
    env.add_argument("--no-probe", action="store_true", help="skip the speed probe (seconds)")

    theory = sub.add_parser("theory", help="check D* = log P/Q and V_D = 2log2 - 2JSD")
    theory.add_argument("--out", default="theory", help="folder for the table and plots")
    theory.add_argument("--quick", action="store_true", help="smaller budgets (for tests)")
    theory.add_argument("--seed", type=int, default=0)
    return parser


def _next_run_dir(root: Path, name: str) -> Path:
    numbers = [int(m.group(1)) for p in root.glob("*") if (m := re.match(r"(\d{5})-", p.name))]
    return root / f"{max(numbers, default=-1) + 1:05d}-{name}"


def _train(args: argparse.Namespace) -> int:
    from minmax import config as C

    if args.list_presets:
        print("\n".join(C.preset_names()))
        return 0
    overrides = list(args.overrides)
    if args.data:
        overrides.insert(0, f"data.name={args.data}")
    init = None
    if args.resume:
        if args.init_from:
            raise UsageError(
                "--init-from starts a new run; --resume continues one: give one of them"
            )
        if args.preset or args.config:
            raise UsageError("--resume takes the run's own config: drop --preset/--config")
        run_dir = Path(args.resume)
        if not (run_dir / "config.yaml").is_file():
            raise UsageError(_no_config(run_dir))
        cfg = C.resolve(config_file=run_dir / "config.yaml", overrides=overrides)
    else:
        preset, config_file = _preset_for(args), args.config
        if args.init_from:
            from minmax.train.init_from import read_source

            init = read_source(args.init_from)
            if not (preset or config_file):  # the source's own settings
                preset, config_file = init.preset, init.config_file
        cfg = C.resolve(preset, config_file, overrides)
    # Check every name, file and shape before anything is written.
    from minmax.augment import check_image_data, parse_ops, parse_policy
    from minmax.data.sources import resolve_data
    from minmax.models import MODELS
    from minmax.objectives import get_objective

    get_objective(cfg.loss.objective)
    parse_policy(cfg.augment.policy)
    if cfg.augment.ada:
        parse_ops(cfg.augment.ada_ops)
    family = MODELS.get(cfg.model.arch)
    if args.dry_run:  # image data are not loaded: a preset can be read before its data exist
        from minmax.train.autotune import preview

        _say_preset(args, cfg.preset)
        print(preview(cfg) + C.to_yaml(cfg), end="")
        return 0
    source = resolve_data(cfg.data)
    _say_preset(args, cfg.preset)
    family.kwargs(cfg.model, source.shape, source.n_classes)
    if cfg.augment.ada:
        check_image_data(source.shape)
    if init is not None or cfg.train.freeze_d:
        from minmax.train import init_from

        init_from.check(cfg, source.shape, source.n_classes, init)
    if cfg.eval.metrics:
        from minmax.evaluate import check_specs, load_extractor, parse_metrics

        specs = parse_metrics(cfg.eval.metrics)
        check_specs(specs, load_extractor(cfg.eval.features), source.shape)
    n_data = len(getattr(source, "dataset", ()))
    if n_data and n_data < cfg.train.batch_size:
        raise UsageError(
            f"'{cfg.data.name}' holds {n_data} images, fewer than train.batch_size="
            f"{cfg.train.batch_size}: add images or lower train.batch_size"
        )
    # Under torchrun, rank 0 picks and checks the run folder and tells the others.
    from minmax.train import distributed

    d = distributed.setup(cfg.train.device, cfg.train.dist_timeout_s)
    answer = ""
    if d.is_main:
        try:
            run_dir = _choose_run_dir(args, cfg.preset)
            answer = f"ok:{run_dir}"
        except UsageError as err:
            answer = f"error:{err}"
    answer = distributed.broadcast_text(d, answer)
    kind, _, text = answer.partition(":")
    if kind == "error":
        distributed.teardown(d)
        raise UsageError(text)
    run_dir = Path(text)

    from minmax.train.loop import train

    if d.is_main:
        print(f"run folder: {run_dir}", file=sys.stderr)
    try:
        summary = train(
            cfg, run_dir, bool(args.resume), progress=not args.quiet, source=source, init=init
        )
    except BaseException as err:
        keep = isinstance(err, DivergenceError)  # its diagnostic is in the folder
        keep = keep or (run_dir / ".lock").exists()  # ours is released: another run's folder
        if d.is_main and not args.resume and not keep and not _has_checkpoint(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping
        raise
    if d.is_main:
        _print_summary(summary)
    return 0


def _preset_for(args: argparse.Namespace) -> str | None:
    """--preset, or 'points' for a points file given without --preset/--config (said on
    stderr once the file has been read: a bad file's error stays the only line)."""
    from minmax.data.sources import is_points_file

    if args.preset or args.config or not args.data or not is_points_file(args.data):
        return args.preset
    return "points"


def _say_preset(args: argparse.Namespace, preset: str) -> None:
    if preset == "points" and not (args.preset or args.config or args.resume):
        print(f"minmax: --data {args.data} is a points file: preset 'points' (standardised, "
              "codes over the data's box, a Fourier D head); --preset NAME for another",
              file=sys.stderr)  # fmt: skip


# What a run killed before it wrote its config.yaml leaves: its lock (RunLock takes a dead
# run's over), its speed choice, a fine-tuned run's init_from.json and a partial config.
# Nothing to continue: the same --out starts it again.
_BEFORE_CONFIG = re.compile(
    r"\.lock(\.stale\.\d+)?|(config\.yaml|speed\.json|init_from\.json)(\.part)?"
)


def _no_config(run_dir: Path) -> str:
    """Why ``--resume RUN_DIR`` finds no config.yaml: the real cause, and the fix."""
    if not run_dir.is_dir():
        return f"run folder '{run_dir}' does not exist: check the path"
    left = [p.name for p in run_dir.iterdir()]
    if left and all(_BEFORE_CONFIG.fullmatch(name) for name in left):
        return (
            f"'{run_dir}' holds no config.yaml: its run was stopped before writing it; start "
            f"it again with --out {run_dir} and the same settings"
        )
    return f"'{run_dir}' is not a run folder (no config.yaml): check the path"


def _choose_run_dir(args: argparse.Namespace, preset: str) -> Path:
    if args.resume:
        from minmax.train.checkpoint import NoCheckpointError, find_checkpoint

        with contextlib.suppress(NoCheckpointError):  # none finished: train starts it over
            find_checkpoint(Path(args.resume))
        return Path(args.resume)
    run_dir = Path(args.out) if args.out else _next_run_dir(Path("runs"), preset)
    if run_dir.exists() and not all(_BEFORE_CONFIG.fullmatch(p.name) for p in run_dir.iterdir()):
        raise UsageError(
            f"run folder '{run_dir}' already exists: continue it with --resume {run_dir}, "
            "or choose another --out"
        )
    return run_dir


def _has_checkpoint(run_dir: Path) -> bool:
    from minmax.train.checkpoint import find_checkpoint

    try:
        find_checkpoint(run_dir)
    except UsageError:
        return False
    return True


def _print_summary(summary: dict) -> None:
    keys = [
        "kimg",
        "seconds",
        "stopped_by",
        "modes_captured",
        "n_modes",
        "hq_fraction",
        "reverse_kl",
        "spread",
    ]
    width = max(map(len, keys))
    for key in keys:
        if key in summary:
            value = summary[key]
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            print(f"{key:<{width}}  {text}")
    if "counts" in summary:
        print(f"{'per-mode counts':<{width}}  {summary['counts']}")


def _sample(args: argparse.Namespace) -> int:
    from minmax.sample import generate, load_generator, save_samples

    if args.correct or args.accept_target is not None:
        return _sample_corrected(args)
    G = load_generator(args.run_dir, args.network)
    x, y = generate(G, args.n, args.seed, class_index=args.class_index, truncation=args.truncation)
    out = save_samples(x, args.out, y)
    print(f"wrote {args.n} samples to {out}")
    return 0


def _sample_corrected(args: argparse.Namespace) -> int:
    from minmax.ratio import sample_corrected
    from minmax.sample import save_samples

    if not args.correct:
        raise UsageError("--accept-target tunes a correction: add --correct drs")
    if args.truncation is not None:
        raise UsageError("--truncation changes the proposal D was calibrated on: drop one")
    x, y, stats = sample_corrected(
        args.run_dir, args.correct, args.n, args.seed,
        network=args.network or "G_ema", class_index=args.class_index,
        accept_target=args.accept_target,
        chain_length=args.chain_length, pool_factor=args.pool_factor,
    )  # fmt: skip
    out = save_samples(x, args.out, y)
    print(stats.line())
    print(f"wrote {len(x)} samples to {out}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from minmax.ratio import CalibrationConfig, calibrate

    config = CalibrationConfig(
        kimg=args.kimg,
        lr=args.lr,
        batch_size=args.batch_size,
        seed=args.seed,
        network=args.network,
        n_eval=args.n_eval,
    )
    result = calibrate(args.run_dir, config)
    print(result.table())
    print(f"wrote {Path(args.run_dir) / 'calibrated'}/ (D.safetensors, calibration.json)")
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    from minmax.ratio import diagnose

    if args.memorisation:
        from minmax.ratio.diagnose import diagnose_memorisation

        result, files = diagnose_memorisation(
            args.run_dir, args.out, args.n, args.seed, args.features
        )
        print(result.line())
        print(f"wrote {', '.join(files)}")
        return 0
    if args.features:
        raise UsageError("--features is for --memorisation: add it, or drop --features")
    if args.calibrate_kimg is not None and (
        not args.calibrate_kimg > 0 or math.isinf(args.calibrate_kimg)
    ):
        raise UsageError(f"--calibrate-kimg must be positive, got {args.calibrate_kimg} (to read "
                         "the training D as it is, use --uncalibrated)")  # fmt: skip
    result = diagnose(args.run_dir, args.out, args.n, args.seed, calibrate_kimg=args.calibrate_kimg,
                      calibrated=not args.uncalibrated)  # fmt: skip
    print(result.table())
    return 0


def _interpolate(args: argparse.Namespace) -> int:
    from minmax.images import make_grid, save_animation, save_grid, to_uint8
    from minmax.sample import interpolate, load_generator

    out = Path(args.out)
    if out.suffix.lower() not in (".gif", ".webp"):
        raise UsageError(f"cannot write '{out}': use a .gif or .webp file name")
    G = load_generator(args.run_dir, args.network)
    frames = to_uint8(interpolate(G, args.points, args.steps, args.seed, args.class_index))
    if frames.ndim != 4:
        raise UsageError("interpolate draws images: this run's generator makes points")
    save_animation([make_grid(f[None], 1, pad=0) for f in frames], out)
    strip = save_grid(frames[:: max(1, args.steps // 4)], out.with_suffix(".png"), n_cols=16)
    print(f"wrote {len(frames)} frames to {out} and a strip to {strip}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from minmax.export import export_run

    out = export_run(
        args.run_dir, args.out, network=args.network, license=args.license, onnx=args.onnx
    )
    print(f"wrote {out}/ ({', '.join(sorted(p.name for p in out.iterdir()))})")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from minmax.evaluate import evaluate, format_table
    from minmax.train.logs import append_jsonl

    records = evaluate(
        args.generated,
        args.ref,
        args.metrics,
        args.features,
        n=args.n,
        seed=args.seed,
        root=args.data_root,
        split=args.split,
        inception_weights=args.inception_weights,
    )
    print(format_table(records))
    run = Path(args.generated)
    if (run / "checkpoint").is_dir():
        for record in records:
            append_jsonl(run / "metrics.jsonl", record)
    return 0


def _features(args: argparse.Namespace) -> int:
    if args.action != "train":
        raise UsageError("say what to do: minmax features train --data mnist")
    from minmax.data.images import load_images
    from minmax.metrics.features.digits import (
        default_digits_path,
        save_feature_net,
        train_feature_net,
    )

    train_set = load_images(args.data, root=args.data_root, split="train", channels=1)
    test_set = load_images(args.data, root=args.data_root, split="test", channels=1)
    if train_set.labels is None or train_set.shape[1:] != (28, 28):
        raise UsageError(f"'{args.data}' must be labelled 28×28 images (digit-like data)")
    name = Path(args.data).stem if Path(args.data).suffix else args.data
    out = Path(args.out) if args.out else default_digits_path(name)
    if out.suffix != ".safetensors":
        raise UsageError(f"--out must end in .safetensors, got '{out}'")
    net, accuracy = train_feature_net(
        train_set.images,
        train_set.labels,
        test_set.images,
        test_set.labels,
        epochs=args.epochs,
        seed=args.seed,
    )
    meta = {"data": args.data, "epochs": args.epochs, "seed": args.seed}
    meta["test_accuracy"] = accuracy
    save_feature_net(net, out, meta)
    print(f"test accuracy {accuracy:.4f}; wrote {out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from minmax.report import write_report

    out = write_report(args.run_dir, args.out)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


def _env(args: argparse.Namespace) -> int:
    from minmax.env import report

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    print(report(probe=not args.no_probe, say=say))
    return 0


def _theory(args: argparse.Namespace) -> int:
    from minmax.theory import run_checks

    report = run_checks(Path(args.out), quick=args.quick, seed=args.seed)
    return 0 if report.all_passed else 1


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command is None:
            _parser().print_help()
            return 0
        return {
            "train": _train,
            "sample": _sample,
            "interpolate": _interpolate,
            "export": _export,
            "evaluate": _evaluate,
            "features": _features,
            "theory": _theory,
            "calibrate": _calibrate,
            "diagnose": _diagnose,
            "env": _env,
            "report": _report,
        }[args.command](args)
    except UsageError as err:
        print(f"minmax: error: {err}", file=sys.stderr)
        return 2
    except DivergenceError as err:
        print(f"minmax: error: {err}", file=sys.stderr)
        return 3
