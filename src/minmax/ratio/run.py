"""What the ratio tools read from a run folder: its config, G, D, and real data D never saw.

Only the checkpoint readers of ``minmax.store`` are used (``find_checkpoint``, ``read_spec``,
``load_module``), so a change of the checkpoint's file layout does not reach this package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from minmax.config import Config, resolve
from minmax.data.images import ImageDataset
from minmax.data.points import Points
from minmax.data.sources import ImageSource, Source, ToySource, resolve_data
from minmax.errors import UsageError
from minmax.models import rebuild
from minmax.objectives import head_mean
from minmax.store import find_checkpoint, load_module, read_spec

EVAL_SEED_OFFSET = 30_000  # evaluation draws never overlap the calibration stream
EVAL_SHARE = 0.5  # of a held-out image split, the part kept for evaluation, not fitting


def load_run_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UsageError(f"'{run_dir}' is not a run folder (no config.yaml): check the path")
    return resolve(config_file=run_dir / "config.yaml")


def load_run_discriminator(run_dir: str | Path) -> tuple[nn.Module, dict]:
    """The run's own D (a fresh module: a copy, never the run's file) and the networks spec."""
    folder = find_checkpoint(Path(run_dir))
    spec = read_spec(folder)
    if "D" not in spec:
        raise UsageError(f"run '{run_dir}' has no discriminator in its checkpoint: retrain it")
    D = rebuild(spec, "D")
    try:
        load_module(folder, "D", D)
    except UsageError as err:
        raise UsageError(
            f"run '{run_dir}' has no usable discriminator checkpoint ({err}): the ratio tools "
            "need the D that 'minmax train' saves beside G"
        ) from None
    return D.eval().requires_grad_(False), spec


def fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's tensors: tells whether a calibration still matches its G."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically (temp file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


@dataclass
class HeldOut:
    """Real data for the ratio tools: ``fit`` to fine-tune D on, ``x``/``y`` to evaluate on.

    Image runs use the data config's other split (a train run's test split), halved by a
    seeded permutation into a fitting part and an evaluation part: the run's D saw the
    training images for the whole run and may have memorised them, so its scores there are
    not P's. Toy densities are sampled afresh (a new seed for evaluation).
    """

    fit: Source
    x: Tensor
    y: Tensor | None
    description: dict


def held_out(cfg: Config, n_eval: int, seed: int) -> HeldOut:
    """The real data calibration and diagnosis use (see :class:`HeldOut`)."""
    source = resolve_data(cfg.data)
    rng = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    if isinstance(source, ToySource):
        if isinstance(source.density, Points):
            return _held_out_points(cfg, source.density, n_eval, rng)
        source = ToySource(source.density)  # the user's units, as G and D are rebuilt in
        x, _ = source.sample(n_eval, rng)
        description = {"name": cfg.data.name, "note": "fresh samples of P", "n_eval": n_eval}
        return HeldOut(source, x, None, description)
    other = "test" if cfg.data.split == "train" else "train"
    note = f"the '{other}' split, halved: one part fits D, the other evaluates it"
    try:
        source = resolve_data(dataclasses.replace(cfg.data, split=other))
    except UsageError:  # a folder or an .npz without x_test: only the run's own split
        other = cfg.data.split
        note = f"no held-out split: the run's own '{other}' split, halved (D saw these images)"
    data = source.dataset
    order = torch.randperm(len(data), generator=rng)
    n_eval = min(n_eval, int(len(data) * EVAL_SHARE))
    if n_eval < 1 or len(data) - n_eval < 1:
        raise UsageError(f"'{cfg.data.name}' holds too few images ({len(data)}) to calibrate D")
    fit = ImageSource(_subset(data, order[n_eval:]))
    evaluate = _subset(data, order[:n_eval])
    x = evaluate.images.float() / 127.5 - 1
    description = {"name": cfg.data.name, "split": other, "note": note,
                   "n_fit": len(data) - n_eval, "n_eval": n_eval}  # fmt: skip
    return HeldOut(fit, x, evaluate.labels, description)


def _held_out_points(cfg: Config, points: Points, n_eval: int, rng: torch.Generator) -> HeldOut:
    """A points file halved like an image split: D fits one part, is scored on the other.

    The run's D saw every row; scoring the calibrated D on rows it was not fit to is what
    shows whether calibration learnt the ratio or memorised the file.
    """
    order = torch.randperm(len(points), generator=rng)
    n_eval = min(n_eval, int(len(points) * EVAL_SHARE))
    if n_eval < 1:
        raise UsageError(f"'{cfg.data.name}' holds too few points ({len(points)}) to calibrate D")
    fit = ToySource(Points(points.data[order[n_eval:]]))  # the user's units, as G and D are
    note = "the points file, halved: one part fits D, the other evaluates it"
    description = {"name": cfg.data.name, "note": note, "n_fit": len(points) - n_eval,
                   "n_eval": n_eval}  # fmt: skip
    return HeldOut(fit, points.data[order[:n_eval]], None, description)


def _subset(data: ImageDataset, index: Tensor) -> ImageDataset:
    labels = None if data.labels is None else data.labels[index]
    return ImageDataset(data.images[index], labels, data.n_classes, data.name, data.class_names)


def conditional(module: nn.Module) -> bool:
    return bool(getattr(module, "n_classes", 0))


@torch.no_grad()
def draw_fakes(
    G: nn.Module, n: int, rng: torch.Generator, labels: Tensor | None = None, batch: int = 1000
) -> tuple[Tensor, Tensor | None]:
    """n samples G(z, y), z ~ N(0, I) from ``rng``; ``labels`` are y (conditional G only)."""
    z = torch.randn(n, G.z_dim, generator=rng)
    y = labels if conditional(G) else None
    parts = [
        G(zb, None if y is None else y[i : i + batch])
        for i, zb in zip(range(0, n, batch), z.split(batch), strict=True)
    ]
    return (torch.cat(parts) if parts else z.new_zeros(0)), y


@torch.no_grad()
def logits_of(D: nn.Module, x: Tensor, y: Tensor | None = None, batch: int = 1000) -> Tensor:
    """D(x, y) in float64, in batches; y is passed only to a class-conditional D."""
    y = y if conditional(D) else None
    parts = [
        head_mean(D(xb, None if y is None else y[i : i + batch])).double()
        for i, xb in zip(range(0, len(x), batch), x.split(batch), strict=True)
    ]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
