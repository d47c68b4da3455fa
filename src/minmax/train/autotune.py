"""``auto`` speed settings: what fits this machine, decided at the start of each run.

The same preset runs 10× faster or 10× slower depending on the CPU or GPU under it (bf16 is
native on AVX512-BF16/AMX CPUs and on GPUs, emulated and far slower elsewhere; NHWC pays on
some devices and not others), so no fixed choice holds everywhere. What ``auto`` does:

- ``train.precision``: fp32, or bf16 where the device computes bf16 in hardware
  (``minmax.machine.native_bf16``) *and* a probe finds it ≥ 5% faster (it costs precision);
- ``train.channels_last``: for convolutional models, NHWC when the probe finds it ≥ 3% faster;
- ``train.adam``: the fused kernel where this torch supports it on the device, else foreach;
- ``train.threads`` (0): torch's default, or the cores shared out among the ranks of a host;
- ``train.accum_steps``: raised on a GPU that runs out of memory on the whole batch.

The probe times a few training iterations (one D step, one G step at the run's per-rank
batch; on a CPU, a smaller batch where the whole one would take the probe past half a minute)
of throw-away copies of the run's own networks, candidates interleaved so that a slow
spell of the machine hits them alike. It picks by speed alone and is not seeded: two fresh runs
can choose differently when the candidates are close, which changes float rounding, not the
maths. A resumed run on the same machine reuses its recorded choice (``speed.json``), so it
continues bit-identically; explicit values are never overridden.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import torch

from minmax.config import Config
from minmax.data.sources import Source
from minmax.errors import UsageError
from minmax.machine import machine_summary, native_bf16, usable_cores
from minmax.train.distributed import Dist

SPEED_FILE = "speed.json"
KNOWN_DEVICES = ("cpu", "cuda")
BF16_MARGIN = 1.05  # bf16 must be this much faster than fp32 to be chosen
NHWC_MARGIN = 1.03  # ties keep the default NCHW layout
PROBE_SECONDS = 3.0  # timed rounds stop after this, once MIN_ROUNDS are in
MIN_ROUNDS, MAX_ROUNDS, WARMUP = 3, 12, 2
PROBE_BUDGET_S = 30.0  # CPU: a probe predicted to take longer times a smaller batch instead
SCOUT_BATCH = 4  # the batch of the one step that predicts it


@dataclass
class Speed:
    """The resolved settings, why, and what the probe measured (images/s per candidate)."""

    precision: str
    channels_last: bool
    adam: str
    threads: int
    accum_steps: int
    probe: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    asked: dict[str, object] = field(default_factory=dict)  # the requests it resolved
    machine: str = ""

    def apply(self, cfg: Config) -> Config:
        """A copy of ``cfg`` with these settings in place of ``auto``."""
        out = copy.deepcopy(cfg)
        t = out.train
        t.precision, t.channels_last, t.adam = self.precision, self.channels_last, self.adam
        t.threads, t.accum_steps = self.threads, self.accum_steps
        return out

    def settings(self) -> str:
        t = self
        return (f"train.precision={t.precision} train.channels_last={str(t.channels_last).lower()}"
                f" train.adam={t.adam} train.threads={t.threads}"
                + (f" train.accum_steps={t.accum_steps}" if t.accum_steps > 1 else ""))  # fmt: skip

    def line(self) -> str:
        """One line for stderr and the config's header."""
        probe = ", ".join(f"{k} {v:.0f}" for k, v in self.probe.items())
        measured = f" (probe, img/s: {probe})" if probe else ""
        return f"{self.settings()}{measured}"


def label(precision: str, channels_last: bool) -> str:
    return precision + ("+NHWC" if channels_last else "")


def auto_threads(t_threads: int, device: torch.device) -> int:
    """``train.threads`` or, for 0, torch's default; several ranks on one host's CPU share
    its cores (torchrun would otherwise leave each at its default of 1 thread)."""
    if t_threads:
        return t_threads
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if device.type == "cpu" and local > 1:
        return max(1, usable_cores() // local)
    return torch.get_num_threads()


@cache
def fused_adam_works(device: torch.device) -> bool:
    """Whether this torch has a fused Adam kernel for float32 parameters on ``device``."""
    try:
        param = torch.zeros(2, device=device, requires_grad=True)
        opt = torch.optim.Adam([param], fused=True)
        param.grad = torch.ones_like(param)
        opt.step()
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def candidates(cfg: Config, shape: tuple[int, ...], device: torch.device) -> list[tuple]:
    """(precision, channels_last) pairs ``auto`` may choose between here."""
    t = cfg.train
    if t.precision == "auto":
        precisions = ["fp32", "bf16"] if native_bf16(device) else ["fp32"]
    else:
        precisions = [t.precision]
    if t.channels_last == "auto":
        layouts = [False, True] if len(shape) == 3 and cfg.model.arch != "mlp" else [False]
    else:
        layouts = [bool(t.channels_last)]
    return [(p, c) for p in precisions for c in layouts]


def time_iterations(
    cfg: Config, source: Source, device: torch.device, options: list[tuple], batch: int,
    seconds: float = PROBE_SECONDS, rounds: tuple[int, int] = (MIN_ROUNDS, MAX_ROUNDS),
) -> dict[tuple, float]:  # fmt: skip
    """Images/s of one D step + one G step for each (precision, channels_last) option, on
    throw-away copies of the run's networks; rounds interleaved, median per option."""
    from minmax.augment import DiffAugment
    from minmax.objectives import get_objective
    from minmax.train.loop import build_run, iteration

    objective = get_objective(cfg.loss.objective)
    rng_state = torch.get_rng_state()  # build_run seeds torch: leave the caller's stream as it was
    runs = {}
    for precision, layout in options:
        c = copy.deepcopy(cfg)
        t = c.train
        t.precision, t.channels_last, t.compile, t.n_dis = precision, layout, False, 1
        t.sync_bn = False  # rank 0 probes alone: no collective may run
        t.batch_size = batch
        run = build_run(c, source, Dist(device=device))
        runs[(precision, layout)] = (c, run, DiffAugment(c.augment.policy, run.local_rng))

    def once(key: tuple) -> float:
        c, run, augment = runs[key]
        _sync(device)
        start = time.perf_counter()
        iteration(c, run, source, objective, augment)
        run.count.step += 1
        _sync(device)
        return time.perf_counter() - start

    times: dict[tuple, list[float]] = {key: [] for key in runs}
    for key in runs:
        for _ in range(WARMUP if once(key) < 1.0 else 0):  # slow networks: one warm-up
            once(key)
    began = time.perf_counter()
    for i in range(rounds[1]):
        if i >= rounds[0] and time.perf_counter() - began > seconds:
            break
        for key in runs:
            times[key].append(once(key))
    torch.set_rng_state(rng_state)
    return {key: batch / statistics.median(values) for key, values in times.items()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_speed(
    cfg: Config, source: Source, d: Dist, previous: dict | None = None, say=None,
    seconds: float = PROBE_SECONDS,
) -> Speed:  # fmt: skip
    """Resolve every ``auto`` speed setting of ``cfg`` for this machine (see the module doc).

    ``previous``: the ``speed.json`` of the run being resumed; reused when it was made on
    this machine for the same requests. ``say``: where progress notes go (stderr)."""
    t, device = cfg.train, d.device
    say = say or (lambda text: print(f"minmax: {text}", file=sys.stderr))
    asked = {"precision": t.precision, "channels_last": t.channels_last, "adam": t.adam,
             "threads": t.threads, "accum_steps": t.accum_steps}  # fmt: skip
    machine = machine_summary()
    if previous and previous.get("machine") == machine and previous.get("asked") == asked:
        speed = Speed(**{k: v for k, v in previous.items() if k in Speed.__dataclass_fields__})
        speed.notes = ["reused from this run's speed.json (same machine)"]
        torch.set_num_threads(speed.threads)
        return speed
    threads = auto_threads(t.threads, device)
    torch.set_num_threads(threads)
    adam = t.adam
    if adam == "auto":
        adam = "fused" if fused_adam_works(device) else "foreach"
    speed = Speed("fp32", False, adam, threads, t.accum_steps, asked=asked, machine=machine)
    options = candidates(cfg, source.shape, device)
    if device.type not in KNOWN_DEVICES:  # nothing measured there: the plain settings
        options = [(t.precision if t.precision != "auto" else "fp32",
                    t.channels_last if t.channels_last != "auto" else False)]  # fmt: skip
        speed.notes.append(f"auto: no speed rules or probe for device '{device.type}': fp32, NCHW")
    batch = t.batch_size // d.world_size
    if len(options) > 1:
        if d.is_main:
            say(f"choosing speed settings: timing {', '.join(label(*o) for o in options)} "
                f"on {device.type} ...")  # fmt: skip
        batch = _cpu_probe_batch(cfg, source, device, options, batch, speed)
        if batch == 0:  # too slow to time within the budget: the plain settings
            options = options[:1]
    if len(options) > 1:
        measured = _probe_fitting(cfg, source, device, options, batch, speed, seconds)
        speed.probe = {label(*k): v for k, v in measured.items()}
        (best_p, best_c) = _pick(measured)
        speed.precision, speed.channels_last = best_p, best_c
    else:
        speed.precision, speed.channels_last = options[0]
    if t.precision == "bf16" and device.type == "cpu" and not native_bf16(device):
        speed.notes.append(_emulated_note(cfg, source, d, speed))
    return speed


def agree_speed(cfg: Config, source: Source, d: Dist, previous: dict | None = None) -> Speed:
    """``resolve_speed`` on rank 0, its answer on every rank (one probe, one choice)."""
    from minmax.train import distributed

    speed = resolve_speed(cfg, source, d, previous) if d.is_main else None
    if d.enabled:
        text = distributed.broadcast_text(d, json.dumps(asdict(speed)) if d.is_main else "")
        speed = Speed(**json.loads(text))
        torch.set_num_threads(speed.threads)
    return speed


def _cpu_probe_batch(
    cfg: Config, source: Source, device: torch.device, options: list[tuple], batch: int,
    speed: Speed,
) -> int:  # fmt: skip
    """The batch the probe times. A CPU's images/s barely change with the batch past a few
    dozen images, but a GPU preset's whole batch can take minutes a step there: one step of
    ``SCOUT_BATCH`` images predicts the probe's time, and a probe that would pass
    ``PROBE_BUDGET_S`` times the largest batch that fits (noted); 0 when not even
    ``SCOUT_BATCH`` images fit: no probe, the plain settings (noted). GPUs keep the whole
    batch: their speed and memory depend on it."""
    if device.type != "cpu" or batch <= SCOUT_BATCH:
        return batch
    scout = time_iterations(cfg, source, device, options[:1], SCOUT_BATCH, 0.0, (1, 1))
    per_image = 1 / next(iter(scout.values()))
    steps = len(options) * (1 + MIN_ROUNDS)  # a slow network's probe: no warm-up steps
    if per_image * batch * steps <= PROBE_BUDGET_S:
        return batch
    fits = int(PROBE_BUDGET_S / (per_image * steps))
    step = f"one step of {batch} images takes about {per_image * batch:.0f} s on this CPU"
    if fits < SCOUT_BATCH:
        speed.notes.append(f"too slow to probe here ({step}): {label(*options[0])}")
        return 0
    speed.notes.append(f"probe timed at batch {fits}, not {batch}: {step}")
    return fits


def _probe_fitting(
    cfg: Config, source: Source, device: torch.device, options: list[tuple], batch: int,
    speed: Speed, seconds: float,
) -> dict[tuple, float]:  # fmt: skip
    """The probe, with the per-rank batch split into more micro-batches while a GPU runs
    out of memory (the optimizer step still sees the whole batch)."""
    while True:
        micro = batch // speed.accum_steps
        probe_cfg = copy.deepcopy(cfg)
        probe_cfg.train.accum_steps = speed.accum_steps
        try:
            return time_iterations(probe_cfg, source, device, options, batch, seconds)
        except torch.cuda.OutOfMemoryError:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if micro % 2 or micro < 2:
                raise UsageError(
                    f"train.batch_size={cfg.train.batch_size} does not fit in this GPU's memory "
                    f"even as micro-batches of {micro}: lower train.batch_size"
                ) from None
            speed.accum_steps *= 2
            speed.notes.append(f"out of memory at micro-batch {micro}: train.accum_steps="
                               f"{speed.accum_steps} (same global batch)")  # fmt: skip


def _pick(measured: dict[tuple, float]) -> tuple[str, bool]:
    """The fastest option, where bf16 and NHWC must win by their margins."""

    def worth(key: tuple) -> float:
        precision, layout = key
        handicap = (BF16_MARGIN if precision == "bf16" else 1.0) * (NHWC_MARGIN if layout else 1.0)
        return measured[key] / handicap

    return max(measured, key=worth)


def _emulated_note(cfg: Config, source: Source, d: Dist, speed: Speed) -> str:
    """train.precision=bf16 asked for where bf16 is emulated: honoured, with its measured cost
    (one timed iteration each at the run's batch: emulated bf16 is too slow for more)."""
    layout, one = speed.channels_last, copy.deepcopy(cfg)
    one.train.accum_steps = speed.accum_steps
    options = [("fp32", layout), ("bf16", layout)]
    batch = cfg.train.batch_size // d.world_size
    measured = time_iterations(one, source, d.device, options, batch, 0.0, rounds=(1, 1))
    ratio = measured[("fp32", layout)] / measured[("bf16", layout)]
    return (f"train.precision=bf16 but this CPU has no native bf16 (AVX512-BF16 or AMX): "
            f"measured {ratio:.1f}× slower than fp32 here; train.precision=auto would choose "
            "fp32")  # fmt: skip


def unprobed(cfg: Config, device: torch.device) -> Config:
    """``cfg`` with any ``auto`` left resolved without a probe (fp32, NCHW): for code that
    builds a run directly (tests, benchmarks) rather than through ``train``."""
    t = cfg.train
    if "auto" not in (t.precision, t.channels_last, t.adam):
        return cfg
    out = copy.deepcopy(cfg)
    t = out.train
    t.precision = "fp32" if t.precision == "auto" else t.precision
    t.channels_last = False if t.channels_last == "auto" else t.channels_last
    if t.adam == "auto":
        t.adam = "fused" if fused_adam_works(device) else "foreach"
    return out


STANDIN_SHAPES = {
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "stacked-mnist": (3, 28, 28),
}


def preview(cfg: Config, seconds: float = PROBE_SECONDS) -> str:
    """The config header ``--dry-run`` prints: what ``auto`` resolves to here, probing the
    run's networks on stand-in data of the dataset's shape (random pixels: speed does not
    depend on them). Data whose shape only its files tell (folders, .npz images) is probed at
    the start of the run instead."""
    from minmax.data.images import ImageDataset
    from minmax.data.sources import ImageSource, resolve_data
    from minmax.train.distributed import pick_device

    d = Dist(device=pick_device(cfg.train.device))
    name, data = cfg.data.name, cfg.data
    if name in STANDIN_SHAPES:
        channels, side, _ = STANDIN_SHAPES[name]
        shape = (data.channels or channels, data.resolution or side, data.resolution or side)
        gen = torch.Generator().manual_seed(0)
        n = max(cfg.train.batch_size, 64)
        pixels = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen)
        labels = torch.arange(n) % 10
        source = ImageSource(ImageDataset(pixels, labels, 10, name, [str(i) for i in range(10)]))
    else:
        later = "# auto: resolved at the start of the run (a probe of the run's networks"
        if Path(name).expanduser().is_dir():  # reading a folder's images can take minutes
            return later + ")\n"
        try:
            source = resolve_data(data)
        except UsageError as err:
            return f"{later}; the data cannot be read now: {err})\n"
    return config_header(resolve_speed(cfg, source, d, say=lambda text: None, seconds=seconds))


def write_speed(run_dir: Path, speed: Speed) -> None:
    from minmax.train.checkpoint import write_json

    write_json(Path(run_dir) / SPEED_FILE, asdict(speed))


def read_speed(run_dir: Path) -> dict | None:
    """A run's recorded choice, or None (none written, or unreadable: probe again)."""
    path = Path(run_dir) / SPEED_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def config_header(speed: Speed) -> str:
    """YAML comment lines for a run's config.yaml: what ``auto`` resolved to, and where."""
    lines = [f"# auto resolved on {speed.machine}:", f"#   {speed.line()}"]
    lines += [f"#   note: {note}" for note in speed.notes]
    return "\n".join(lines) + "\n"
