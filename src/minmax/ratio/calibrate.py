"""Calibrate D into D ≈ log P/Q_G: fine-tune a copy of a run's D on V_D with G frozen.

A trained D is a snapshot of a game: at the end of training it is fit to a G that has since
moved, perhaps under another objective (hinge, WGAN), and it may have memorised the training
images. The founding theory says what D *should* be: the minimiser of
``V_D = E_P[softplus(−D)] + E_Q[softplus(D)]`` is D*(x) = log P(x)/Q_G(x). Calibration
freezes G (G_ema by default: what users sample), fine-tunes a copy of D on V_D for a fixed
budget on real data D has not trained on, and stores it in ``RUN_DIR/calibrated/``:

    D.safetensors       the calibrated D's weights (rebuilt from the spec in the JSON)
    calibration.json    budget, seed, G's fingerprint, held-out V_D, divergence estimates,
                        reliability (ECE before/after, a Platt step's effect)
    reliability.png     reliability diagrams of the run's D and the calibrated one
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from minmax.data.sources import ToySource
from minmax.errors import UsageError
from minmax.models import rebuild
from minmax.objectives import get_objective
from minmax.ratio.divergence import (
    Estimate,
    KDEDensity,
    LogDensities,
    divergence_estimates,
    format_divergences,
    kde_bandwidth,
    with_references,
)
from minmax.ratio.reliability import platt_check, plot_reliability, reliability, v_d
from minmax.ratio.run import (
    EVAL_SEED_OFFSET,
    conditional,
    draw_fakes,
    fingerprint,
    held_out,
    load_run_config,
    load_run_discriminator,
    logits_of,
    write_json,
)
from minmax.sample import load_generator
from minmax.store import load_module

CALIBRATED = "calibrated"
V_D_OBJECTIVE = "nonsaturating"  # its d_loss is eq. 1's V_D (as is "saturating"'s)
KDE_SAMPLES = 10_000  # G samples behind the toy reference Q_G
TOY_REFERENCE_N = 3000  # held-out samples of each side the toy references use


AUTO_PASSES = 20  # default budget: passes over the rows D fits...
AUTO_KIMG = (100.0, 500.0)  # ...within these bounds; fresh samples (toy densities): the top


def auto_kimg(data: dict) -> float:
    """The default budget for held-out data described by ``data`` (``HeldOut.description``).

    Measured (docs/ratio.md): 100 kimg, 20 passes over MNIST's 5,000 fit images, corrects
    images best (300 corrected less); on a 60,000-row points file 100 kimg is under 2
    passes and leaves 3-D near misses that 500 removes. Passes over the fit rows cover
    both: more rows bear a longer fit before D learns them by heart.
    """
    low, high = AUTO_KIMG
    n_fit = data.get("n_fit")
    return high if n_fit is None else min(high, max(low, AUTO_PASSES * n_fit / 1000))


@dataclass(frozen=True)
class CalibrationConfig:
    """The budget and knobs of one calibration; None means "the run's own value"."""

    kimg: float | None = None  # real samples shown to D, in thousands; None = auto_kimg
    lr: float | None = None  # Adam step size, cosine-decayed to 0; None = the run's train.lr_d
    batch_size: int | None = None  # None = the run's train.batch_size
    seed: int = 0
    network: str = "G_ema"  # the generator whose ratio D learns: G_ema (sampled) or G
    n_eval: int = 10_000  # held-out samples of P and of Q_G for V_D and the divergences
    n_bootstrap: int = 1000

    def validate(self) -> None:
        if self.kimg is not None and (not self.kimg > 0 or math.isinf(self.kimg)):
            raise UsageError(f"the calibration budget --kimg must be positive, got {self.kimg}")
        if self.lr is not None and not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise UsageError(f"--batch-size must be positive, got {self.batch_size}")
        if self.network not in ("G_ema", "G"):
            raise UsageError(f"unknown network '{self.network}': choose G_ema or G")
        if self.n_eval < 2:
            raise UsageError(f"--n-eval must be at least 2, got {self.n_eval}")


@dataclass
class Calibration:
    """What ``calibration.json`` holds; ``table()`` is what ``minmax calibrate`` prints."""

    run_dir: str
    network: str
    G_sha256: str
    kimg: float
    steps: int
    lr: float
    batch_size: int
    seed: int
    seconds: float
    data: dict
    v_d_before: float  # the run's own D, same held-out samples
    divergences: dict[str, Estimate]
    toy: dict = field(default_factory=dict)  # references on toy densities
    # ECE and reliability diagram of sigmoid(D) before/after, and a Platt step's effect
    reliability: dict = field(default_factory=dict)
    networks: dict = field(default_factory=dict)  # the spec that rebuilds D

    @property
    def v_d(self) -> Estimate:
        return self.divergences["v_d"]

    def as_dict(self) -> dict:
        out = asdict(self)
        out["objective"] = f"{V_D_OBJECTIVE} d_loss: V_D = E_P[softplus(-D)] + E_Q[softplus(D)]"
        return out

    def table(self) -> str:
        v = self.v_d
        lines = [
            f"calibrated D for {self.network}: {self.kimg:g} kimg ({self.steps} steps, batch "
            f"{self.batch_size}, lr {self.lr:g}, seed {self.seed}) in {self.seconds:.1f} s",
            f"held-out data: {self.data.get('note')}; {self.data['n_eval']} samples each of P, Q",
            f"held-out V_D {v.value:.4f} [{v.low:.4f}, {v.high:.4f}]  (run's D: "
            f"{self.v_d_before:.4f}; 2 log 2 = {2 * math.log(2):.4f} is a D that cannot tell)",
        ]
        name = "reference (P exact, Q_G by KDE)" if self.toy else ""
        lines.append(format_divergences(self.divergences, name))
        if self.reliability:
            r, platt = self.reliability, self.reliability["platt"]
            lines.append(
                f"reliability of sigmoid(D) on held-out P and Q: ECE {r['ece']:.4f} (run's D "
                f"{r['ece_before']:.4f}); a Platt step {platt['a']:.3f}·D{platt['b']:+.3f}, fit "
                f"on half, on the other half: V_D {platt['v_d']:.4f} -> {platt['v_d_platt']:.4f},"
                f" ECE {platt['ece']:.4f} -> {platt['ece_platt']:.4f}"
            )
        if self.toy:
            lines.append(
                f"|D - log P/Q| weighted by (P+Q)/2: mean {self.toy['ratio_error_mean']:.4f}, "
                f"median {self.toy['ratio_error_median']:.4f} nats (Q_G: KDE of "
                f"{self.toy['kde_samples']} samples, bandwidth {self.toy['kde_bandwidth']:g})"
            )
        return "\n".join(lines)


def fine_tune(
    D: nn.Module, G: nn.Module, fit, steps: int, batch_size: int, lr: float, betas, seed: int
) -> nn.Module:
    """Minimise V_D over D's weights on reals from ``fit`` and fresh G(z); G stays frozen.

    D stays in eval mode: batch-norm uses its running statistics, so the function trained is
    the one later evaluated (train-mode BN would make a logit depend on its batch-mates).
    """
    d_loss = get_objective(V_D_OBJECTIVE).d_loss
    rng = torch.Generator().manual_seed(seed)
    D.eval().requires_grad_(True)
    opt = torch.optim.Adam(D.parameters(), lr=lr, betas=betas)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    for _ in range(steps):
        real, y_real = fit.sample(batch_size, rng)
        labels = fit.sample_labels(batch_size, rng)
        fake, y_fake = draw_fakes(G, batch_size, rng, labels, batch=batch_size)
        loss = d_loss(
            D(real, y_real if conditional(D) else None),
            D(fake, y_fake if conditional(D) else None),
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
    return D.requires_grad_(False)


def calibrate(run_dir: str | Path, config: CalibrationConfig = CalibrationConfig()) -> Calibration:
    """Fine-tune, evaluate and store a calibrated D beside the run (``RUN_DIR/calibrated/``)."""
    config.validate()
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    G = load_generator(run_dir, config.network)
    D, spec = load_run_discriminator(run_dir)
    data = held_out(cfg, config.n_eval, config.seed)
    batch_size = config.batch_size or cfg.train.batch_size
    lr = config.lr or cfg.train.lr_d
    kimg = auto_kimg(data.description) if config.kimg is None else config.kimg
    steps = max(1, math.ceil(kimg * 1000 / batch_size))

    # Held-out fakes, drawn once: the same for the run's D and the calibrated one.
    rng = torch.Generator().manual_seed(config.seed + EVAL_SEED_OFFSET + 1)
    n_eval = len(data.x)
    x_q, y_q = draw_fakes(G, n_eval, rng, data.fit.sample_labels(n_eval, rng))
    before_p, before_q = logits_of(D, data.x, data.y), logits_of(D, x_q, y_q)
    v_d_before = v_d(before_p, before_q)

    start = time.monotonic()
    betas = (cfg.train.beta1, cfg.train.beta2)
    fine_tune(D, G, data.fit, steps, batch_size, lr, betas, config.seed)
    seconds = time.monotonic() - start

    logits_p, logits_q = logits_of(D, data.x, data.y), logits_of(D, x_q, y_q)
    estimates = divergence_estimates(logits_p, logits_q, config.n_bootstrap, config.seed)
    toy = {}
    if isinstance(data.fit, ToySource) and hasattr(data.fit.density, "log_prob"):
        toy, exact = _toy_references(data.fit.density, G, data.x, x_q, logits_p, logits_q, config)
        estimates = with_references(estimates, exact)
    before, after = reliability(before_p, before_q), reliability(logits_p, logits_q)
    checks = {"ece": after["ece"], "ece_before": before["ece"],
              "bins": after["bins"], "platt": platt_check(logits_p, logits_q)}  # fmt: skip
    result = Calibration(
        str(run_dir), config.network, fingerprint(G), kimg, steps, lr, batch_size,
        config.seed, round(seconds, 2), data.description, v_d_before, estimates,
        toy, checks, spec,
    )  # fmt: skip
    folder = save_calibration(run_dir, D, result)
    plot_reliability({"run's D": before, "calibrated D": after},
                     folder / "reliability.png")  # fmt: skip
    return result


def _toy_references(p, G, x_p, x_q, logits_p, logits_q, config: CalibrationConfig):
    """Exact P against a KDE of Q_G: the ratio error and the divergences' reference values.

    On the first ``TOY_REFERENCE_N`` held-out samples of each side: a KDE's log density at
    a point costs a pass over all of its ``KDE_SAMPLES`` centres.
    """
    rng = torch.Generator().manual_seed(config.seed + EVAL_SEED_OFFSET + 2)
    many, _ = draw_fakes(G, KDE_SAMPLES, rng)
    bandwidth = kde_bandwidth(p, many)
    m = TOY_REFERENCE_N
    logs = LogDensities.of(p, KDEDensity(many, bandwidth).log_prob, x_p[:m], x_q[:m])
    toy = logs.ratio_error(logits_p[:m], logits_q[:m])
    exact = logs.divergences()
    toy.update(kde_samples=KDE_SAMPLES, kde_bandwidth=bandwidth, n=len(x_p[:m]), reference=exact)
    return toy, exact


def save_calibration(run_dir: Path, D: nn.Module, result: Calibration) -> Path:
    folder = run_dir / CALIBRATED
    folder.mkdir(exist_ok=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in D.state_dict().items()}
    tmp = folder / "D.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(folder / "D.safetensors")
    write_json(folder / "calibration.json", _json_safe(result.as_dict()))
    return folder


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def load_calibrated(run_dir: str | Path, G: nn.Module | None = None) -> tuple[nn.Module, dict]:
    """The calibrated D of a run and its calibration.json; checks it still matches ``G``.

    No calibration, or one made for another G (the run trained on, or the other network),
    is a UsageError that says to run ``minmax calibrate``.
    """
    import json

    folder = Path(run_dir) / CALIBRATED
    meta_path = folder / "calibration.json"
    if not meta_path.is_file():
        raise UsageError(
            f"run '{run_dir}' has no calibrated discriminator: run 'minmax calibrate {run_dir}' "
            "first"
        )
    meta = json.loads(meta_path.read_text())
    if G is not None and fingerprint(G) != meta["G_sha256"]:
        raise UsageError(
            f"the calibrated D in '{folder}' was fit to another generator (it was made for "
            f"{meta['network']} before the run changed, or for the other network): run "
            f"'minmax calibrate {run_dir} --network ...' again"
        )
    D = rebuild(meta["networks"], "D")
    load_module(folder, "D", D)
    return D.eval().requires_grad_(False), meta
