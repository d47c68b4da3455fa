"""Run every theory check, print a table, write report.json/report.md and PNG plots."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from minmax.data import GaussianMixture, gaussian, mixture1d, ring
from minmax.plots import plot_curves, plot_fields, plot_points
from minmax.theory.dynamics import saturation_experiment, train_1d_game
from minmax.theory.optimal_d import evaluate_discriminator, fit_discriminator, log_ratio_field

RATIO_TOLERANCE = 0.05  # nats, weighted by (P+Q)/2
JSD_TOLERANCE = 0.01  # nats


@dataclass
class Row:
    check: str
    measured: float
    target: str
    passed: bool


@dataclass
class TheoryReport:
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def all_passed(self) -> bool:
        return all(row.passed for row in self.rows)

    def add(self, check: str, measured: float, target: str, passed: bool) -> None:
        self.rows.append(Row(check, measured, target, bool(passed)))

    def table(self) -> str:
        width = max(len(r.check) for r in self.rows)
        lines = [f"{'check':<{width}}  {'measured':>10}  {'target':<16}  result"]
        for r in self.rows:
            verdict = "pass" if r.passed else "FAIL"
            lines.append(f"{r.check:<{width}}  {r.measured:>10.4f}  {r.target:<16}  {verdict}")
        return "\n".join(lines)


def density_pairs() -> list[tuple[str, GaussianMixture, GaussianMixture, list]]:
    """(name, P, Q, quadrature bounds): two 1-D pairs and one 2-D pair.

    Within a pair the widest components share one std, so log P/Q grows at most linearly in
    the tails, where an MLP with LeakyReLU can follow it (a quadratic tail it cannot).
    """
    four = GaussianMixture(
        means=[[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]],
        stds=[0.5, 0.5, 0.5, 0.5],
        weights=[0.1, 0.2, 0.3, 0.4],
    )
    two = GaussianMixture(means=[[0.0, 0.0], [1.5, -0.5]], stds=[0.5, 0.5], weights=[0.6, 0.4])
    shifted = GaussianMixture(means=[[-1.0], [1.5]], stds=[0.6, 0.6], weights=[0.5, 0.5])
    return [
        ("1d: N(0,1) vs N(1,1.5^2)", gaussian(1, 0.0, 1.0), gaussian(1, 1.0, 1.5), (-12.0, 14.0)),
        ("1d: mixture1d vs 2-mixture", mixture1d(), shifted, (-8.0, 8.0)),
        ("2d: 4-mixture vs 2-mixture", four, two, [(-5.0, 6.0), (-5.5, 5.5)]),
    ]


def run_checks(out: Path, quick: bool = False, seed: int = 0, verbose: bool = True) -> TheoryReport:
    """Measure each claim; ``quick`` shrinks budgets (for tests), and two pass marks with them:
    the 1-D game's JSD (0.1 instead of 0.02: 600 steps cannot reach the full run's) and D's
    error against log P/Q (0.1 instead of 0.05: 600 D steps left the mixtures at 0.07)."""
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    report = TheoryReport()
    say = print if verbose else (lambda *a, **k: None)

    # Claims 1–2: D* = log P/Q and JSD = log 2 − V_D/2, Q held fixed.
    d_steps = 600 if quick else 4000
    ratio_tolerance = 2 * RATIO_TOLERANCE if quick else RATIO_TOLERANCE
    for index, (name, p, q, bounds) in enumerate(density_pairs()):
        say(f"[theory] fitting D on {name} ({d_steps} steps)")
        D = fit_discriminator(p, q, d_steps, seed=seed + index)
        r = evaluate_discriminator(name, D, p, q, bounds, n=50_000 if quick else 200_000)
        report.add(
            f"{name}: E_M|D - log P/Q|",
            r.ratio_error,
            f"<= {ratio_tolerance}",
            r.ratio_error <= ratio_tolerance,
        )
        gap = abs(r.jsd_estimate - r.jsd_exact)
        report.add(f"{name}: |JSD_D - JSD_exact|", gap, f"<= {JSD_TOLERANCE}", gap <= JSD_TOLERANCE)
        report.add(f"{name}: JSD_exact (nats)", r.jsd_exact, "(reference)", True)
        plot_bounds = [(-5.0, 6.0)] if p.dim == 1 else [(-3.0, 3.0)] * 2
        plot_fields(
            {"trained D(x)": D, "exact log P(x)/Q(x)": log_ratio_field(p, q)},
            plot_bounds,
            out / f"optimal_d_{index}.png",
            clip=6.0,
        )

    # Claim 3: the game drives Q_G to P (JSD over training, 1-D mixture).
    p = mixture1d()
    steps = 600 if quick else 6000
    say(f"[theory] training G and D on mixture1d ({steps} steps)")
    game = train_1d_game(p, steps, eval_every=max(steps // 30, 1), seed=seed)
    report.add("1d game: JSD(P, Q_G) at start", game.jsd[0], "(reference)", True)
    final = game.jsd[-1]
    target = 0.1 if quick else 0.02
    report.add("1d game: JSD(P, Q_G) at end", final, f"<= {target}", final <= target)
    plot_curves(
        {"JSD(P, Q_G_ema), 400 bins": (game.kimg, game.jsd)},
        out / "jsd_training.png",
        "kimg (real samples shown to D, thousands)",
        "JSD (nats)",
        logy=True,
        title="The game minimises JSD(P, Q_G)",
    )
    real = p.sample(len(game.final_samples), torch.Generator().manual_seed(seed))
    plot_points(real, game.final_samples, out / "game_samples.png", "mixture1d: P vs final Q_G")

    # Claim 4: the saturating G loss loses its gradient when D wins early.
    say("[theory] saturating vs non-saturating G gradients on the ring")
    sat = saturation_experiment(
        ring(), [0, 10, 30, 100, 300] if quick else [0, 10, 30, 100, 300, 1000], seed=seed
    )
    ratio = sat.grad_nonsaturating[-1] / max(sat.grad_saturating[-1], 1e-30)
    report.add("ring: E_Q[D] after D wins", sat.mean_logit_fake[-1], "(reference)", True)
    report.add("ring: |grad NS| / |grad sat|", ratio, ">= 100", ratio >= 100)
    plot_curves(
        {
            "saturating: -E_Q[softplus(D)]": (sat.d_steps, sat.grad_saturating),
            "non-saturating: E_Q[softplus(-D)]": (sat.d_steps, sat.grad_nonsaturating),
        },
        out / "g_gradients.png",
        "D steps against the initial G",
        "||grad wrt G weights||",
        logy=True,
        title="Early training: D wins, the saturating loss goes silent",
    )

    report.seconds = time.monotonic() - start
    rows = [asdict(r) for r in report.rows]
    (out / "report.json").write_text(
        json.dumps(
            {
                "rows": rows,
                "seconds": round(report.seconds, 1),
                "quick": quick,
                "seed": seed,
                "all_passed": report.all_passed,
            },
            indent=2,
        )
    )
    (out / "report.md").write_text(_markdown(report))
    say(report.table())
    say(
        f"[theory] {'all checks passed' if report.all_passed else 'SOME CHECKS FAILED'} "
        f"in {report.seconds:.0f} s; plots and report in {out}/"
    )
    return report


def _markdown(report: TheoryReport) -> str:
    lines = ["| check | measured | target | result |", "|---|---|---|---|"]
    for r in report.rows:
        value = f"{r.measured:.4f}" if math.isfinite(r.measured) else str(r.measured)
        lines.append(f"| {r.check} | {value} | {r.target} | {'pass' if r.passed else 'FAIL'} |")
    return "\n".join(lines) + "\n"
