"""The alternating min–max loop: n_dis D steps on V_D (or another objective), one G step.

Read ``train`` top to bottom: set up, (resume), loop over steps, finish. The steps themselves
(``minmax.train.steps``) own backward() and the optimizer updates; this file decides when
they run, on which ranks, and what gets logged, checkpointed and reported.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn.utils import parametrize
from tqdm import tqdm

from minmax.augment import ADA, DiffAugment, make_augment
from minmax.config import Config, TrainConfig, to_yaml
from minmax.data.sources import Source, resolve_data
from minmax.data.standardize import with_units
from minmax.errors import DivergenceError, UsageError
from minmax.models import build_networks
from minmax.models.codes import code_prior
from minmax.models.layers import BatchNorm2d
from minmax.objectives import Objective, get_objective
from minmax.train import autotune, distributed, init_from
from minmax.train.burnin import burnin
from minmax.train.checkpoint import (
    NoCheckpointError,
    check_fingerprint,
    find_checkpoint,
    load_module,
    load_training,
    save_checkpoint,
    write_json,
    write_text,
)
from minmax.train.distributed import Dist
from minmax.train.ema import Latents, recompute_batch_norm, update_ema
from minmax.train.fingerprint import fingerprint
from minmax.train.health import Health, nonfinite
from minmax.train.init_from import InitSource
from minmax.train.lock import RunLock
from minmax.train.logs import Logger, set_aside
from minmax.train.revive import revive_code, revive_due
from minmax.train.snapshots import Snapshots
from minmax.train.steps import Engine, Slice, d_step, draw, g_step, new_latents

LOCAL_SEED_OFFSET = 1_000_003  # per-rank streams (augmentation, GP) never share the main one
EMA_BN_SEED_OFFSET = 30_000  # the latents G_ema's batch-norm statistics are estimated from
BOX_SAMPLES = 10_000  # data samples whose per-coordinate range is model.code_init=box's box
STOP_REASONS = [None, "max_minutes", "signal"]  # codes agreed on by all ranks


@dataclass
class Counters:
    step: int = 0  # G steps taken
    images_seen: int = 0  # real samples shown to D, summed over ranks

    @property
    def kimg(self) -> float:
        return self.images_seen / 1000


def make_adam(module: nn.Module, lr: float, t: TrainConfig) -> torch.optim.Adam:
    """Adam; ``fused`` (one kernel for all parameters: ~30% faster steps on CPU here),
    ``foreach`` (batched ops) or ``loop`` (per parameter) compute the same update."""
    impl = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}
    params = [p for p in module.parameters() if p.requires_grad]  # not D's frozen blocks
    return torch.optim.Adam(params, lr=lr, betas=(t.beta1, t.beta2), **impl[t.adam])


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def set_beta2(opt: torch.optim.Optimizer, beta2: float) -> None:
    for group in opt.param_groups:
        group["betas"] = (group["betas"][0], beta2)


def lr_factor(schedule: str, progress: float) -> float:
    """Multiplier of the base learning rates at ``progress`` ∈ [0, 1] of the run."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    return 1.0


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot run here, or None when it can."""
    try:
        import torch._dynamo  # noqa: F401
        import torch._inductor  # noqa: F401
    except Exception as err:  # a broken or partial install
        return f"torch.compile cannot be imported ({type(err).__name__}: {err})"
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile does not support Python {sys.version.split()[0]} on {sys.platform}"
    if device.type == "cpu" and not shutil.which(os.environ.get("CXX", "g++")):
        return "inductor's CPU backend needs a C++ compiler (g++ or $CXX) and none was found"
    return None


def compiler(enabled: bool, device: torch.device) -> Callable[[nn.Module], nn.Module]:
    """``torch.compile`` when asked and available; otherwise the module itself, with a note.

    Networks with spectral norm stay eager: its power iteration updates buffers in place
    during the forward, and the compiled backward then finds a saved tensor changed (seen
    with torch 2.11 on CUDA and 2.13 on CPU).
    """
    if not enabled:
        return lambda module: module
    reason = compile_unavailable(device)
    if reason:
        print(f"minmax: train.compile=true but {reason}; training runs eager", file=sys.stderr)
        return lambda module: module
    torch._dynamo.config.suppress_errors = True  # a graph it rejects runs eager, with a warning
    told: set[str] = set()

    def compile_unless_sn(module: nn.Module) -> nn.Module:
        if not any(parametrize.is_parametrized(m) for m in module.modules()):
            return torch.compile(module)
        name = type(getattr(module, "module", module)).__name__
        if name not in told:
            told.add(name)
            print(f"minmax: train.compile: {name} uses spectral norm, which torch.compile "
                  "cannot train yet; it runs eager", file=sys.stderr)  # fmt: skip
        return module

    return compile_unless_sn


def make_engine(G: nn.Module, D: nn.Module, t: TrainConfig, d: Dist) -> Engine:
    """The callables the steps use: DDP-wrapped where gradients must be all-reduced,
    compiled where asked, in bf16 autocast when ``train.precision`` says so."""
    bf16 = t.precision == "bf16"
    fast = compiler(t.compile, d.device)
    G_fast, D_fast = fast(G), fast(D)
    if d.enabled:  # the updated copies all-reduce their gradients
        G_ddp, D_ddp = distributed.wrap(G, d), distributed.wrap(D, d)
        G_train, D_train = fast(G_ddp), fast(D_ddp)
    else:  # one process: compile each network once
        G_train, D_train, D_ddp = G_fast, D_fast, D
    return Engine(
        G=G_fast, D=D_fast, G_train=G_train, D_train=D_train, D_reg=D_ddp,
        device=d.device, bf16=bf16, channels_last=t.channels_last is True,
    )  # fmt: skip


def check_batch(t: TrainConfig, d: Dist) -> Slice:
    """This rank's share of the global batch; the batch must split evenly."""
    shares = d.world_size * t.accum_steps
    if t.batch_size % shares:
        raise UsageError(
            f"train.batch_size={t.batch_size} does not split over {d.world_size} rank(s) × "
            f"{t.accum_steps} micro-batch(es): make it a multiple of {shares}"
        )
    return Slice.of(t.batch_size, d.rank, d.world_size, t.accum_steps)


@dataclass
class Run:
    """Everything a training step reads or changes: networks, optimizers, RNG and counters."""

    G: nn.Module
    D: nn.Module
    G_ema: nn.Module
    spec: dict
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    rng: torch.Generator  # the shared stream: data, latents, classes (same on every rank)
    count: Counters
    local_rng: torch.Generator = field(default_factory=torch.Generator)  # this rank's: aug, GP
    engine: Engine | None = None
    part: Slice | None = None
    keep: int = 3  # checkpoints kept (train.keep_checkpoints), besides the best
    lr_scale: float = 1.0  # lowered by each rollback after a divergence; saved, resumed
    ema_latents: Latents | None = None  # (n, rng) -> G's inputs, for G_ema's BN statistics
    ema_bn_samples: int = 0  # train.ema_bn_samples
    ema_bn_seed: int = 0
    ema_fresh: int | None = None  # images_seen when G_ema's statistics were last recomputed
    augment: DiffAugment | ADA | None = None  # what D's inputs go through; ADA's p is saved

    def networks(self) -> dict[str, nn.Module]:
        return {"G": self.G, "D": self.D, "G_ema": self.G_ema}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"G": self.opt_G, "D": self.opt_D}

    def ema_for_use(self) -> nn.Module:
        """G_ema with batch-norm statistics estimated for its own weights (at most once per
        step); what grids, scores, checkpoints and the final report see."""
        if self.ema_latents and self.ema_bn_samples and self.ema_fresh != self.count.images_seen:
            seed, n = self.ema_bn_seed, self.ema_bn_samples
            recompute_batch_norm(self.G_ema, self.ema_latents, n, seed)
            self.ema_fresh = self.count.images_seen
        return self.G_ema

    def save(
        self,
        run_dir: Path,
        local_states: list[Tensor] | None = None,
        *,
        keep: int = 3,
        score: float | None = None,
        fingerprint: dict | None = None,
    ) -> Path:
        """``local_states``: every rank's local RNG state, in rank order (default: this one's).

        A crash-safe checkpoint (minmax.train.checkpoint): the newest ``keep`` are kept, and
        the one with the lowest ``score`` (e.g. an FID); ``fingerprint`` is what a resume
        must match (minmax.train.fingerprint)."""
        c = self.count
        self.ema_for_use()
        local_states = local_states or [self.local_rng.get_state()]
        rng = {"loop": self.rng.get_state()}
        rng.update({f"local/{r}": state for r, state in enumerate(local_states)})
        return save_checkpoint(
            run_dir,
            self.networks(),
            self.spec,
            self.optimizers(),
            rng,
            {
                "step": c.step,
                "images_seen": c.images_seen,
                "kimg": c.kimg,
                "lr_scale": self.lr_scale,
                **({"ada": self.augment.state_dict()} if isinstance(self.augment, ADA) else {}),
            },  # fmt: skip
            keep=keep,
            score=score,
            fingerprint=fingerprint,
        )

    def load(self, run_dir: Path, rank: int = 0, fingerprint: dict | None = None) -> Path:
        """Resume from the newest checkpoint that verifies; returns its folder. A rank the
        checkpoint has no local RNG state for (a run resumed on more ranks than wrote it)
        keeps its freshly seeded one. With ``fingerprint``, a checkpoint of another config
        or dataset is refused (UsageError); a folder with no finished checkpoint raises
        NoCheckpointError, and nothing is loaded."""
        folder = find_checkpoint(run_dir)
        if fingerprint is not None:
            check_fingerprint(folder, fingerprint)
        for name, module in self.networks().items():
            load_module(folder, name, module)
        state, rng_states = load_training(folder, self.optimizers())
        self.rng.set_state(rng_states["loop"])
        if f"local/{rank}" in rng_states:
            self.local_rng.set_state(rng_states[f"local/{rank}"])
        self.count = Counters(state["step"], state["images_seen"])
        self.lr_scale = state.get("lr_scale", 1.0)
        if isinstance(self.augment, ADA) and "ada" in state:  # p resumes where it was
            self.augment.load_state_dict(state["ada"])
        self.ema_fresh = None
        return folder


def build_run(cfg: Config, source: Source, d: Dist | None = None) -> Run:
    """Seeded networks, G_ema, optimizers and engine for ``cfg`` on data shaped like ``source``."""
    d = d or Dist()
    cfg = autotune.unprobed(cfg, d.device)  # what train() has not resolved: plain settings
    t = cfg.train
    part = check_batch(t, d)
    torch.manual_seed(t.seed)
    G, D, spec = build_networks(cfg.model, source.shape, source.n_classes)
    spec = with_units(spec, getattr(source, "units", None))  # rebuilt in the user's units
    if cfg.model.code_init == "box":  # each code starts at its own point of the data's box
        real, _ = source.sample(BOX_SAMPLES, torch.Generator().manual_seed(t.seed))
        real = real.flatten(1).float()
        G.place_codes(real.min(0).values, real.max(0).values, torch.Generator().manual_seed(t.seed))
    for module in (*G.modules(), *D.modules()):
        if isinstance(module, BatchNorm2d):
            module.sync = t.sync_bn
    fmt = torch.channels_last if t.channels_last is True and len(source.shape) == 3 else None
    G, D = (m.to(d.device, memory_format=fmt) if fmt else m.to(d.device) for m in (G, D))
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    for module in G_ema.modules():  # only rank 0 re-estimates G_ema's statistics: never sync
        if isinstance(module, BatchNorm2d):
            module.sync = False
    init_from.freeze_d(D, t.freeze_d)  # FreezeD: before D's optimizer, which skips them
    rng = torch.Generator().manual_seed(t.seed)
    local_rng = torch.Generator().manual_seed(t.seed + LOCAL_SEED_OFFSET * (d.rank + 1))
    opt_G, opt_D = make_adam(G, t.lr_g, t), make_adam(D, t.lr_d, t)
    engine = make_engine(G, D, t, d)
    conditional = getattr(G, "n_classes", 0) > 0

    def ema_latents(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor | None]:
        z = torch.randn(n, cfg.model.z_dim, generator=gen)
        y = source.sample_labels(n, gen) if conditional else None
        return z.to(d.device), None if y is None else y.to(d.device)

    return Run(G, D, G_ema, spec, opt_G, opt_D, rng, Counters(), local_rng, engine, part,
               t.keep_checkpoints, ema_latents=ema_latents, ema_bn_samples=t.ema_bn_samples,
               ema_bn_seed=t.seed + EMA_BN_SEED_OFFSET)  # fmt: skip


def iteration(
    cfg: Config,
    run: Run,
    source: Source,
    objective: Objective,
    augment: DiffAugment | ADA,
    gamma_factor: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """One round of the game: ``n_dis`` D steps, then one G step; returns their losses.
    ``gamma_factor`` multiplies loss.r1_gamma and r2_gamma (the burn-in's γ schedule)."""
    t, z_dim, e, rng = cfg.train, cfg.model.z_dim, run.engine, run.rng
    loss = cfg.loss
    if gamma_factor != 1:
        loss = replace(loss, r1_gamma=loss.r1_gamma * gamma_factor,
                       r2_gamma=loss.r2_gamma * gamma_factor)  # fmt: skip
    observe_real = augment.observe if isinstance(augment, ADA) else None  # ADA's r_t
    for i in range(t.n_dis):
        batches = draw(source, t.batch_size, z_dim, rng, run.part, e)
        regularize = (run.count.step * t.n_dis + i) % cfg.loss.reg_every == 0
        loss_D = d_step(e, objective, loss, batches, run.opt_D, run.local_rng, regularize,
                        augment, observe_real)  # fmt: skip
    batches = new_latents(batches, source, t.batch_size, z_dim, rng, run.part, e)
    prior = code_prior(run.G) if t.code_rate else None
    observe = None if prior is None else partial(prior.observe, rate=t.code_rate)
    loss_G = g_step(e, objective, batches, run.opt_G, augment, cfg.loss.ortho_reg, observe)
    return loss_D, loss_G


class StopSignals:
    """SIGINT/SIGTERM ask for a clean stop (checkpoint, report, exit) at the next step;
    a second Ctrl-C interrupts at once. Handlers are only installed in the main thread."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if sys.platform != "win32" and _main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def train(
    cfg: Config,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    source: Source | None = None,
    init: InitSource | None = None,
) -> dict:
    """Train G and D as ``cfg`` says, writing checkpoints, logs and a report to ``run_dir``.

    Under ``torchrun`` every rank calls this; rank 0 alone writes files. ``source`` is
    ``resolve_data(cfg.data)`` when the caller has loaded it already. ``init``: a new run
    starts from these weights (``minmax.train.init_from.read_source``; fine-tuning).
    """
    if init is not None and resume:
        raise UsageError("--init-from starts a new run; --resume continues one: give one of them")
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    d = distributed.setup(cfg.train.device, cfg.train.dist_timeout_s)
    lock = RunLock(run_dir) if d.is_main else contextlib.nullcontext()  # one run per folder
    try:
        with lock, StopSignals() as signals:
            try:
                summary = _train(cfg, Path(run_dir), resume, progress, source, d, signals, init)
            except DivergenceError:  # the page shows how it got there
                end_of_run_report(d, Path(run_dir))
                raise
            end_of_run_report(d, Path(run_dir))
        # Leave together: a rank that tore its process group down while rank 0 was still
        # writing the report sometimes died at exit in gloo ("terminate called ..."; SIGABRT).
        distributed.barrier(d)
        return summary
    finally:
        distributed.teardown(d)


def end_of_run_report(d: Dist, run_dir: Path) -> None:
    """``RUN/report.html`` from rank 0 (minmax.report); a failure there only warns."""
    if d.is_main:
        from minmax.report import write_report_quietly  # matplotlib stays off the import path

        write_report_quietly(run_dir)


def _train(
    cfg: Config,
    run_dir: Path,
    resume: bool,
    progress: bool,
    source: Source | None,
    d: Dist,
    signals: StopSignals,
    init: InitSource | None = None,
) -> dict:
    source = source or resolve_data(cfg.data)
    objective = get_objective(cfg.loss.objective)
    fp = fingerprint(cfg, source)  # of the request: how a run is computed may change on resume
    # Resolve the auto speed settings for this machine (rank 0 decides for all).
    previous = autotune.read_speed(run_dir) if resume else None
    speed = autotune.agree_speed(cfg, source, d, previous)
    asked, cfg = cfg, speed.apply(cfg)
    t = cfg.train
    run = build_run(cfg, source, d)
    augment = run.augment = make_augment(cfg.augment, run.local_rng, t.batch_size, source.shape)
    restart = False
    if resume:
        try:
            run.load(run_dir, d.rank, fp)
        except NoCheckpointError:  # stopped before its first checkpoint: start it over
            init_from.check_restart(run_dir)
            restart = True
    elif init is not None:  # Fine-tune: start from another run's weights (step 0 only).
        init_from.start_from(run.networks(), init, say=d.is_main)
    log, snapshots = None, None
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if restart:
            aside = set_aside(run_dir)
            print(f"minmax: no checkpoint in '{run_dir}' yet: starting from step 0 with its "
                  f"config.yaml{aside}", file=sys.stderr)  # fmt: skip
        print(f"minmax: speed: {speed.line()}", file=sys.stderr)
        for note in speed.notes:
            print(f"minmax: {note}", file=sys.stderr)
        autotune.write_speed(run_dir, speed)  # first: a restart after the config reuses it
        if not resume:
            init_from.write_record(run_dir, init)  # where a fine-tuned run started
        header = autotune.config_header(speed) + init_from.header(run_dir)
        write_text(run_dir / "config.yaml", header + to_yaml(asked))
        log, snapshots = Logger(run_dir), Snapshots(cfg, source, run_dir)
        log.write({"kind": "speed", "step": run.count.step, **asdict(speed)})
    if init is not None:  # its starting weights: a resume never reads the source again
        save(run, run_dir, d, fp)
    G, count = run.G, run.count

    total_images = math.ceil(t.kimg * 1000)
    images_per_step = t.n_dis * t.batch_size
    deadline = time.monotonic() + (t.max_minutes * 60 if t.max_minutes else math.inf)
    next_checkpoint = count.images_seen + t.checkpoint_every_kimg * 1000
    start, sums, n_sums = time.monotonic(), torch.zeros(2, device=d.device), 0
    # fmt: off
    bar = tqdm(total=total_images, initial=count.images_seen, unit="img", mininterval=1.0,
               unit_scale=True, disable=not (progress and d.is_main), dynamic_ncols=True)
    # fmt: on
    stop_reason, health, rollbacks = "kimg", Health(cfg.loss.objective), 0
    try:
        while count.images_seen < total_images:
            # Stop early? (time cap, SIGINT/SIGTERM on any rank; all ranks agree).
            wanted = 1 if time.monotonic() > deadline else 2 if signals.received else 0
            code = distributed.max_over_ranks(d, wanted)
            if code:
                stop_reason = STOP_REASONS[code]
                break
            # Set learning rates, Adam's β2, γ and G_ema's β: lr_schedule and the burn-in
            # (minmax.train.burnin; functions of images seen, so a resume continues them).
            factor = lr_factor(t.lr_schedule, count.images_seen / total_images)
            schedule = burnin(t, count.kimg)
            set_lr(run.opt_G, t.lr_g * factor * schedule.lr_factor * run.lr_scale)
            set_lr(run.opt_D, t.lr_d * factor * schedule.lr_factor * run.lr_scale)
            if schedule.beta2 is not None:
                set_beta2(run.opt_G, schedule.beta2)
                set_beta2(run.opt_D, schedule.beta2)
            # Update D (n_dis steps), then G.
            loss_D, loss_G = iteration(cfg, run, source, objective, augment, schedule.gamma_factor)
            # Update G_ema (a copy of G during the warm-up).
            warm = count.images_seen < t.ema_warmup_kimg * 1000
            update_ema(run.G_ema, G, 0.0 if warm else schedule.ema_beta)
            count.step += 1
            count.images_seen += images_per_step
            if revive_due(t, count.images_seen, images_per_step):  # a starved code moves
                moved = revive_code(G, run.G_ema, run.D, source, t.seed + count.step)
                if moved is not None and log is not None:
                    log.write({"kind": "revive", "step": count.step, "kimg": count.kimg, **moved})
            bar.update(images_per_step)
            # Log (one host read every log_every_steps, losses averaged over ranks).
            sums += torch.stack([loss_D, loss_G])
            n_sums += 1
            due = count.images_seen >= next_checkpoint
            problems = []
            if count.step % t.log_every_steps == 0:
                loss_d, loss_g = distributed.mean_over_ranks(d, sums / n_sums).tolist()
                sums.zero_()
                n_sums = 0
                problems = health.losses(loss_d, loss_g) + nonfinite(run.networks())
                if not problems:
                    bar.set_postfix(loss_D=f"{loss_d:.3f}", loss_G=f"{loss_g:.3f}")
                    if log is not None:
                        seconds = round(time.monotonic() - start, 3)
                        values = {"loss_D": loss_d, "loss_G": loss_g, "seconds": seconds}
                        if isinstance(augment, ADA):  # ada_p, ada_rt
                            values.update(augment.scalars())
                        log.scalars(count, values)
                        warn(log, count, health.d_wins(loss_d, loss_g))
            elif due:  # never checkpoint NaNs: the last checkpoint stays a good one
                problems = nonfinite(run.networks())
            # Non-finite? Roll back or stop, as train.on_nonfinite says (all ranks agree).
            if (count.step % t.log_every_steps == 0 or due) and distributed.max_over_ranks(
                d, int(bool(problems))
            ):
                recover(run, run_dir, d, fp, t, log, problems, rollbacks)
                rollbacks += 1
                count, sums, n_sums = run.count, sums.zero_(), 0
                next_checkpoint = count.images_seen + t.checkpoint_every_kimg * 1000
                continue
            # Sample grid (rank 0) and checkpoint.
            if snapshots is not None:
                snapshots.maybe(run.ema_for_use, count, log)
            if due:
                save(run, run_dir, d, fp, snapshots and snapshots.score)
                if snapshots is not None and count.kimg >= max(t.ema_warmup_kimg, t.kimg / 10):
                    spread = snapshots.spread_check(run.ema_for_use(), count)
                    warn(log, count, health.collapse(*spread))
                next_checkpoint += t.checkpoint_every_kimg * 1000
    finally:
        bar.close()
    save(run, run_dir, d, fp)
    seconds = time.monotonic() - start

    # Report (rank 0).
    summary = {"kind": "final", "step": count.step, "kimg": count.kimg,
               "seconds": round(seconds, 2), "stopped_by": stop_reason}  # fmt: skip
    if log is not None:
        summary.update(snapshots.final(run.ema_for_use(), run.D, count, log))
        log.write(summary)
        log.close()
    return summary


def warn(log: Logger | None, count: Counters, message: str | None) -> None:
    """A failure sign: to stderr (above the progress bar) and to metrics.jsonl."""
    if message and log is not None:
        tqdm.write(f"minmax: warning: {message}", file=sys.stderr)
        log.write({"kind": "warning", "step": count.step, "kimg": count.kimg, "message": message})


def recover(
    run: Run, run_dir: Path, d: Dist, fp: dict, t: TrainConfig, log: Logger | None,
    problems: list[str], rollbacks: int,
) -> None:  # fmt: skip
    """``train.on_nonfinite``: roll back to the last checkpoint with lower learning rates, or
    stop, leaving a diagnostic beside the untouched last good checkpoint (DivergenceError)."""
    c = run.count
    where = f"step {c.step} ({c.kimg:.1f} kimg)"
    names = problems or ["values on another rank"]
    what = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    if t.on_nonfinite == "rollback" and rollbacks < t.max_rollbacks:
        scale = run.lr_scale * t.rollback_lr_factor
        try:
            run.load(run_dir, d.rank, fp)
        except UsageError:  # nothing saved yet: nothing to roll back to
            pass
        else:
            run.lr_scale = scale
            if log is not None:
                to = run.count.kimg
                event = {"kind": "rollback", "step": c.step, "kimg": c.kimg,
                         "nonfinite": names[:20], "to_kimg": to, "lr_scale": scale}  # fmt: skip
                log.write(event)
                message = f"non-finite {what} at {where}: rolled back to {to:.1f} kimg"
                tqdm.write(f"minmax: {message}, learning rates × {scale:g}", file=sys.stderr)
            return
    after = f" after {rollbacks} rollback(s)" if rollbacks else ""
    if d.is_main:
        folder = Path(run_dir) / "diverged"
        folder.mkdir(parents=True, exist_ok=True)
        for name, module in run.networks().items():
            tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file(tensors, str(folder / f"{name}.safetensors"))
        report = {"step": c.step, "kimg": c.kimg, "nonfinite": names, "rollbacks": rollbacks,
                  "lr_scale": run.lr_scale}  # fmt: skip
        write_json(folder / "report.json", report)
        if log is not None:
            log.write({"kind": "diverged", **report})
    raise DivergenceError(
        f"training diverged at {where}{after}: non-finite {what}. The weights are in "
        f"{Path(run_dir) / 'diverged'}/ for inspection; the last good checkpoint is untouched: "
        "--resume it with train.on_nonfinite=rollback (each rollback lowers both learning rates), "
        "or start a new run with lower train.lr_d/train.lr_g"
    )


def save(
    run: Run, run_dir: Path, d: Dist, fp: dict | None = None, score: float | None = None
) -> None:
    """A checkpoint from rank 0 (all ranks hold the same weights); every rank must call it,
    since it gathers each rank's local RNG state."""
    states = distributed.gather_states(d, run.local_rng.get_state())
    if d.is_main:
        run.save(run_dir, states, keep=run.keep, score=score, fingerprint=fp)
