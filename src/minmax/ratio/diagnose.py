"""Mode-drop report: the real samples D scores highest are the ones G under-covers.

With D ≈ log P/Q_G, a real x with a large D(x) is one where P ≫ Q_G: G rarely makes
anything like it. Ranking held-out real samples by D and looking at the top few percent
shows *what* G misses: a grid of those images, which classes they belong to (labelled data),
or which modes (toy mixtures, where G's own per-mode counts are shown beside them).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from minmax.data.sources import ToySource
from minmax.data.toy import GaussianMixture
from minmax.errors import UsageError
from minmax.images import save_grid, to_uint8
from minmax.metrics.memorisation import Memorisation, check_generator, save_pairs_grid
from minmax.metrics.modes import mode_report
from minmax.ratio.calibrate import CALIBRATED, CalibrationConfig, calibrate, load_calibrated
from minmax.ratio.coverage import group_coverage
from minmax.ratio.probe import LinearProbe, head_features, probe_coverage
from minmax.ratio.run import (
    EVAL_SEED_OFFSET,
    draw_fakes,
    held_out,
    load_run_config,
    load_run_discriminator,
    logits_of,
    write_json,
)
from minmax.sample import load_generator

TOP_FRACTION = 0.05  # the share of real samples with the largest D that counts as "top"
GRID_IMAGES = 64
COVERAGE_FLAG = 0.5  # flagged: G makes the class/mode less than half as often as the data
PROBE_FAKES = 10_000  # G samples the linear probe reads (labelled image data)
PROBE_FIT = 10_000  # at most this many held-out labelled reals fit the probe


@dataclass
class Diagnosis:
    run_dir: str
    discriminator: str
    data: dict
    n: int
    n_top: int
    groups: str  # "class", "mode" or "" (no groups: unlabelled images, other toys)
    rows: list[dict] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    probe: dict = field(default_factory=dict)  # classes: the linear probe's fit and accuracy
    rule: str = (
        "coverage ~ Q_G/P in the group: E_P[exp(-D)] there over its mean on all of P, "
        "weights truncated at √n·median; 90% bootstrap interval; flagged when it lies below "
        f"{COVERAGE_FLAG:g}"
    )

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        lines = [
            f"the {self.n_top} of {self.n} held-out real samples with the largest D "
            f"({self.discriminator}): where P >> Q_G, what G under-covers"
        ]
        probed = bool(self.rows) and "g_share" in self.rows[0]
        if self.rows:
            extra = "  G/data (exact)" if self.groups == "mode" else ""
            extra += "  G share (probe)  90% interval" if probed else ""
            lines.append(f"{self.groups:>6}  data share  top share   mean D  coverage  "
                         f"90% interval     ESS{extra}  flag")  # fmt: skip
            for r in self.rows:
                g = f"  {r['g_over_data']:>15.3f}" if self.groups == "mode" else ""
                if probed:
                    g += (f"  {r['g_share']:>16.3f}  "
                          f"{r['g_share_low']:.3f}-{r['g_share_high']:.3f}")  # fmt: skip
                flag = f"under-covered ({', '.join(r['flagged_by'])})" if r["flagged"] else ""
                interval = f"{r['coverage_low']:.3f}-{r['coverage_high']:.3f}"
                lines.append(
                    f"{r[self.groups]:>6}  {r['data_share']:>10.3f}  {r['top_share']:>9.3f}  "
                    f"{r['mean_d']:>7.3f}  {r['coverage']:>8.3f}  {interval:>12}  "
                    f"{r['ess']:>6.0f}{g}  {flag}"
                )
        lines += [self.rule] if self.rows else []
        if self.probe:
            lines.append(self.probe["note"])
        elif not self.rows:
            lines.append(
                "no coverage per group: the data have no classes (and are not a known mixture); "
                "the grid shows what G under-covers"
            )
        lines += [f"wrote {', '.join(self.files)}"]
        return "\n".join(lines)


def _discriminator(run_dir: Path, calibrated: bool, calibrate_kimg: float | None):
    """The calibrated D (checked against its G), calibrated now (``calibrate_kimg``; None:
    the default budget) when the run has none, or with ``calibrated`` False the run's own D,
    labelled as such."""
    if not calibrated:
        D, _ = load_run_discriminator(run_dir)
        note = "the run's training D, NOT calibrated (--uncalibrated): its coverage is biased"
        return D, load_generator(run_dir, "G_ema"), note
    meta = run_dir / CALIBRATED / "calibration.json"
    if not meta.is_file():
        load_run_discriminator(run_dir)  # a run without a checkpoint fails here, quietly
        budget = "" if calibrate_kimg is None else f" --kimg {calibrate_kimg:g}"
        print(f"minmax: diagnose: calibrating D first ('minmax calibrate {run_dir}{budget}'): "
              "the training D is overconfident, its coverage biased", file=sys.stderr)  # fmt: skip
        calibrate(run_dir, CalibrationConfig(kimg=calibrate_kimg))
    G = load_generator(run_dir, json.loads(meta.read_text())["network"])
    D, _ = load_calibrated(run_dir, G)
    return D, G, "calibrated D"


def group_report(
    groups: Tensor, n_groups: int, top: Tensor, logits: Tensor, name: str, seed: int = 0
) -> list[dict]:
    """Per class/mode: shares of the data and of the top, mean D, and the coverage estimate
    Q_G(A)/P(A) with its interval (``minmax.ratio.coverage``): 1 when G makes the group as
    often as the data has it, 0.5 when half as often. It needs a calibrated D, and sees only
    where P's samples fall. Worst covered first."""
    n_all = torch.bincount(groups, minlength=n_groups).double()
    n_top = torch.bincount(groups[top], minlength=n_groups).double()
    sums = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, groups, logits.double())
    coverage = group_coverage(groups, logits, n_groups, COVERAGE_FLAG, seed)
    rows = []
    for k, c in enumerate(coverage):
        seen = float(n_all[k])
        rows.append({name: k, "n_real": int(seen), "n_top": int(n_top[k]),
                     "data_share": seen / len(groups), "top_share": float(n_top[k]) / len(top),
                     "mean_d": float(sums[k] / seen) if seen else math.nan,
                     "coverage": c.estimate, "coverage_low": c.low, "coverage_high": c.high,
                     "ess": c.ess, "coverage_raw": c.raw, "flagged": c.flagged,
                     "flagged_by": ["D on reals"] if c.flagged else []})  # fmt: skip
    return sorted(rows, key=lambda r: r["coverage"] if math.isfinite(r["coverage"]) else math.inf)


def diagnose(
    run_dir: str | Path,
    out: str | Path | None = None,
    n: int = 5000,
    seed: int = 0,
    top_fraction: float = TOP_FRACTION,
    calibrate_kimg: float | None = None,
    calibrated: bool = True,
) -> Diagnosis:
    """Rank ``n`` held-out real samples by D; write ``diagnose.json`` and a PNG to ``out``.
    A run without a calibrated D gets one first (``calibrate_kimg`` thousand images; None:
    ``calibrate``'s default), unless ``calibrated`` is False: then the training D is used,
    and labelled so."""
    if n < 2:
        raise UsageError(f"--n must be at least 2, got {n}")
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "diagnose"
    cfg = load_run_config(run_dir)
    D, G, which = _discriminator(run_dir, calibrated, calibrate_kimg)
    data = held_out(cfg, n, seed)
    logits = logits_of(D, data.x, data.y)
    n_top = max(1, round(top_fraction * len(logits)))
    top = logits.argsort(descending=True)[:n_top]
    report = Diagnosis(str(run_dir), which, data.description, len(logits), n_top, "")
    out.mkdir(parents=True, exist_ok=True)
    if data.x.ndim == 4:  # images: the most under-covered, highest D first
        grid = save_grid(to_uint8(data.x[top[:GRID_IMAGES]]), out / "under_covered.png", 8)
        report.files.append(str(grid))
        if data.y is not None and data.fit.n_classes:
            report.groups = "class"
            report.rows = group_report(data.y, data.fit.n_classes, top, logits, "class", seed)
            report.probe = _probe_classes(report.rows, D, G, data, seed)
    elif isinstance(data.fit, ToySource) and isinstance(data.fit.density, GaussianMixture):
        mixture = data.fit.density
        report.groups = "mode"
        nearest = mixture.squared_distances(data.x).argmin(1)
        report.rows = group_report(nearest, mixture.n_modes, top, logits, "mode", seed)
        fake, _ = draw_fakes(G, len(data.x), torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET))
        # Ground truth: G's high-quality samples per mode over the data's, same counts.
        g_counts, p_counts = mode_report(fake, mixture).counts, mode_report(data.x, mixture).counts
        for row in report.rows:
            k = row["mode"]
            row["g_over_data"] = g_counts[k] / p_counts[k] if p_counts[k] else math.nan
            row["mean"] = mixture.means[k].tolist()
        if mixture.dim <= 2:
            report.files.append(str(_plot(data.x, fake, top, mixture, out / "under_covered.png")))
    report.files.append(str(out / "diagnose.json"))
    write_json(out / "diagnose.json", _finite(report.as_dict()))
    return report


def _probe_classes(rows: list[dict], D, G, data, seed: int) -> dict:
    """Add G's class shares read by a linear probe on D's features (``minmax.ratio.probe``)
    to ``rows``; a class is flagged when either estimate's interval lies below the flag."""
    fit = data.fit.dataset
    n_classes = data.fit.n_classes
    rng = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET + 3)
    order = torch.randperm(len(fit.images), generator=rng)[:PROBE_FIT]
    x_fit, y_fit = fit.images[order].float() / 127.5 - 1, fit.labels[order]
    try:
        f_fit = head_features(D, x_fit, y_fit)
    except ValueError as err:
        return {"note": f"no probe of G's class shares: {err}"}
    probe = LinearProbe(f_fit, y_fit, n_classes)
    f_eval = head_features(D, data.x, data.y)
    labels = data.fit.sample_labels(PROBE_FAKES, rng)
    fake, y_fake = draw_fakes(G, PROBE_FAKES, rng, labels)
    f_fake = head_features(D, fake, y_fake)
    shares = torch.bincount(torch.cat([fit.labels, data.y]), minlength=n_classes).double()
    estimates = probe_coverage(probe, f_fake, f_eval, data.y, shares / shares.sum(),
                               COVERAGE_FLAG, seed)  # fmt: skip
    for row in rows:
        c = estimates[row["class"]]
        row.update(g_share=c.estimate, g_share_low=c.low, g_share_high=c.high,
                   probe_on_reals=c.on_reals)  # fmt: skip
        if c.flagged:
            row["flagged"] = True
            row["flagged_by"].append("probe on G")
    accuracy = probe.accuracy(f_eval, data.y)
    on_reals = [c.on_reals for c in estimates if math.isfinite(c.on_reals)] or [math.nan]
    note = (f"G share (probe): a linear probe on D's features, fit to {len(y_fit)} held-out "
            f"labelled reals, reads {PROBE_FAKES} G samples (its accuracy on the evaluation "
            f"reals {100 * accuracy:.1f}%; on them it reads every class at "
            f"{min(on_reals):.3f}-{max(on_reals):.3f} of its share: its own bias); a class is "
            "flagged when either interval lies below "
            f"{COVERAGE_FLAG:g}")  # fmt: skip
    return {"accuracy": accuracy, "n_fit": len(y_fit), "n_fakes": PROBE_FAKES,
            "on_reals": [min(on_reals), max(on_reals)], "note": note}  # fmt: skip


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _plot(real: Tensor, fake: Tensor, top: Tensor, mixture: GaussianMixture, path: Path) -> Path:
    """Real (grey), G's samples (blue) and the top-D reals (red); modes numbered."""
    from minmax.plots import plt  # the headless backend is set there

    fig, ax = plt.subplots(figsize=(5.5, 5.5) if mixture.dim == 2 else (6, 3.5))
    if mixture.dim == 1:
        bins = 150
        ax.hist(real[:, 0].numpy(), bins, density=True, alpha=0.4, color="grey", label="real")
        ax.hist(fake[:, 0].numpy(), bins, density=True, alpha=0.4, label="G")
        ax.hist(real[top, 0].numpy(), bins, density=True, alpha=0.6, color="red",
                label="top D (under-covered)")  # fmt: skip
    else:
        ax.scatter(*real.T.numpy(), s=2, c="grey", alpha=0.3, label="real (P)")
        ax.scatter(*fake.T.numpy(), s=2, alpha=0.3, label="generated (Q_G)")
        ax.scatter(*real[top].T.numpy(), s=6, c="red", label="top D: under-covered")
        for k, mean in enumerate(mixture.means.tolist()):
            ax.annotate(str(k), mean, fontsize=8, ha="center", va="bottom")
        ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=3, fontsize=8)
    ax.set_title(f"the top {len(top)} real samples by D")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def diagnose_memorisation(
    run_dir: str | Path,
    out: str | Path | None = None,
    n: int = 5000,
    seed: int = 0,
    features: str | None = None,
) -> tuple[Memorisation, list[str]]:
    """``minmax diagnose RUN --memorisation``: ``n`` of G_ema's images (seeded) and ``n``
    held-out real images (the data's other split), each measured to every image the run
    trained on, in the features of ``features`` (default: the run's ``eval.features``);
    writes ``memorisation.png`` (closest pairs) and ``memorisation.json`` to ``out``."""
    import dataclasses

    from minmax.data.sources import ImageSource, resolve_data
    from minmax.evaluate import load_extractor
    from minmax.sample import generate

    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / "diagnose"
    cfg = load_run_config(run_dir)
    train = resolve_data(cfg.data)
    if not isinstance(train, ImageSource):
        raise UsageError(f"run '{run_dir}' makes points: the memorisation check compares images")
    other = "test" if cfg.data.split == "train" else "train"
    try:
        held = resolve_data(dataclasses.replace(cfg.data, split=other))
    except UsageError:
        raise UsageError(
            f"'{cfg.data.name}' has no '{other}' split: the memorisation check needs real "
            "images G never saw (an .npz with x_test, or a named dataset)"
        ) from None
    extractor = load_extractor(features or cfg.eval.features)
    x, _ = generate(load_generator(run_dir, "G_ema"), n, seed)
    fake = to_uint8(x)
    result = check_generator(fake, train.dataset.images, held.dataset.images, extractor, n, seed)
    out.mkdir(parents=True, exist_ok=True)
    files = [str(save_pairs_grid(fake[:n], train.dataset.images, result,
                                 out / "memorisation.png"))]  # fmt: skip
    record = {"run_dir": str(run_dir), **result.as_dict(), "seed": seed,
              "training": f"{cfg.data.name} ({cfg.data.split})",
              "held_out": f"{cfg.data.name} ({other})",
              "extractor": extractor.describe()}  # fmt: skip
    write_json(out / "memorisation.json", _finite(record))
    return result, [*files, str(out / "memorisation.json")]
