"""Fine-tuning: a new run that starts from another run's weights (``--init-from``), and FreezeD.

``minmax train --init-from SOURCE`` builds the new run as usual (its own folder, config, seed,
fresh optimizers, counters at zero), then, once, before its first step, copies in the weights:

- from a run folder (its newest checkpoint, which must verify against its manifest) or one of
  its checkpoint folders: G, D and G_ema;
- from an export (``minmax export``: G_ema only): G and G_ema start from it, D starts fresh.

Tensors are matched by name and shape; the first that differs (or that one side lacks) stops
it with a UsageError naming the tensor and both shapes. One exception: **class embeddings**
for another number of classes keep the new run's own (seeded) initialisation. A class
embedding is an ``nn.Embedding`` of the new network with one row per class
(``num_embeddings == n_classes``, the network's class count) whose source tensor has one
row per source class: D's projection embedding, G's class-conditional batch-norm gains and
biases (dcgan, resnet), BigGAN's shared embedding. mlp networks have no classes.

The source's resolved config and the SHA-256 of every weights file used go to
``RUN/init_from.json`` (mentioned at the top of ``config.yaml``), and the starting weights are
saved as the run's step-0 checkpoint: a ``--resume`` continues from the run's own checkpoints
and never reads the source again.

``train.freeze_d=K`` (``freeze_d``) keeps D's first K blocks (``minmax.models.d_blocks``) as
they start: their parameters stop requiring gradients and are left out of D's optimizer. Their
buffers (batch-norm statistics, spectral norm's power-iteration vectors) still update.
Nothing here unpickles: weights come from safetensors, configs from YAML and JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from minmax.config import load_yaml, preset_names
from minmax.errors import UsageError
from minmax.models import build_networks, d_blocks
from minmax.store import (
    CHECKPOINT_NAME,
    EXPORT_WEIGHTS,
    MANIFEST,
    checkpoint_folders,
    checkpoint_root,
    file_sha256,
    is_export,
    read_export,
    read_spec,
    read_tensors,
    verify_checkpoint,
)

RECORD = "init_from.json"
NETWORKS = ("G", "D", "G_ema")
PICKLES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".tar"}


@dataclass
class InitSource:
    """What ``--init-from`` read: the weights per network, and what the new run records."""

    path: Path
    kind: str  # "run" or "export"
    weights: dict[str, dict[str, Tensor]]  # network name -> state dict (an export: no D)
    n_classes: int  # the classes the source's networks condition on; 0 = none
    record: dict[str, Any]  # RUN/init_from.json
    config_file: Path | None = None  # a run's config.yaml: the new config's default base
    preset: str | None = None  # an export's preset: the new config's default base
    notes: list[str] = field(default_factory=list)


# Reading the source


def read_source(path: str | Path) -> InitSource:
    """A run folder, one of its checkpoints, or an export, checked; a UsageError otherwise."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in PICKLES:
            raise UsageError(
                f"--init-from '{path}' is a pickle-style file, which minmax never loads "
                "(unpickling can run any code): give a run folder or a folder written by "
                "'minmax export'"
            )
        raise UsageError(
            f"--init-from '{path}' is a file: give a run folder or a folder written by "
            "'minmax export'"
        )
    if not path.is_dir():
        raise UsageError(f"--init-from '{path}' not found: give a run folder or an export folder")
    return _read_export(path) if is_export(path) else _read_run(path)


def _read_run(path: Path) -> InitSource:
    folder = _newest_checkpoint(path)
    problem = verify_checkpoint(folder)
    if problem is not None:
        raise UsageError(
            f"--init-from: checkpoint '{folder}' fails its check ({problem}): restore it, or "
            "give one of the run's older checkpoint folders"
        )
    root = folder.parent.parent if CHECKPOINT_NAME.fullmatch(folder.name) else path
    spec = read_spec(folder)
    files = json.loads((folder / MANIFEST).read_text())["files"]
    weights = {name: _tensors(folder / f"{name}.safetensors") for name in NETWORKS}
    config_file = root / "config.yaml"
    config = load_yaml(config_file) if config_file.is_file() else None
    state = json.loads((folder / "state.json").read_text())
    record = {
        "source": str(path.resolve()),
        "kind": "run",
        "checkpoint": str(folder.resolve()),
        "step": state.get("step"),
        "kimg": state.get("kimg"),
        "sha256": {f"{n}.safetensors": files[f"{n}.safetensors"]["sha256"] for n in NETWORKS},
        "config": config,
    }
    n_classes = int(spec["G"].get("n_classes", 0))
    return InitSource(path, "run", weights, n_classes, record,
                      config_file if config is not None else None)  # fmt: skip


def _newest_checkpoint(path: Path) -> Path:
    """``path`` itself when it is a checkpoint folder, else the run's newest finished one."""
    if (path / "state.json").is_file():
        return path
    finished = [f for f in checkpoint_folders(checkpoint_root(path)) if f.name[-4:] != ".tmp"]
    if finished:
        return finished[0]
    if (path / "config.yaml").is_file():
        raise UsageError(
            f"--init-from '{path}' has no checkpoint yet: wait for its first one "
            "(train.checkpoint_every_kimg) or give another run"
        )
    raise UsageError(
        f"--init-from '{path}' is neither a run folder (config.yaml, checkpoint/) nor an export "
        "(config.json): give a folder written by 'minmax train' or 'minmax export'"
    )


def _read_export(path: Path) -> InitSource:
    config = read_export(path)
    weights_file = path / f"{EXPORT_WEIGHTS}.safetensors"
    tensors = _tensors(weights_file)
    record = {
        "source": str(path.resolve()),
        "kind": "export",
        "network": config.get("network", "G_ema"),
        "sha256": {weights_file.name: file_sha256(weights_file)},
        "config": config,
    }
    note = (
        f"--init-from '{path}' is an export, which holds G_ema only: G and G_ema start from "
        "it, D starts fresh"
    )
    training = config.get("training")
    preset = training.get("preset") if isinstance(training, dict) else None
    preset = preset if preset in preset_names() else None  # a shipped one, else the default
    n_classes = int(config["G"].get("n_classes", 0))
    return InitSource(path, "export", {"G": tensors, "G_ema": tensors}, n_classes, record,
                      preset=preset if isinstance(preset, str) else None, notes=[note])  # fmt: skip


def _tensors(path: Path) -> dict[str, Tensor]:
    return read_tensors(path, prefix="--init-from: ", fix="give an earlier checkpoint")


# Matching and loading


def class_embeddings(module: nn.Module, source_state: dict[str, Tensor], n_source: int) -> set:
    """State keys of ``module``'s class embeddings that are re-initialised: those with one row
    per class, when the source has one row per *its* class and the counts differ (the rule
    in the module docstring)."""
    n_classes = int(getattr(module, "n_classes", 0) or 0)
    if not n_classes or not n_source or n_classes == n_source:
        return set()
    state, keys = module.state_dict(), set()
    for prefix, sub in module.named_modules():
        if not (isinstance(sub, nn.Embedding) and sub.num_embeddings == n_classes):
            continue
        own = {k for k in state if k.startswith(f"{prefix}.")}
        rows = [source_state[k].shape[0] for k in own if k.endswith(("weight", "original"))
                and k in source_state and source_state[k].ndim == 2]  # fmt: skip
        if rows and all(r == n_source for r in rows):
            keys |= own
    return keys


def plan(networks: dict[str, nn.Module], source: InitSource) -> tuple[dict, list[str]]:
    """The state dict each network loads (the source's tensors, its own class embeddings
    where re-initialised), and the notes to print; a UsageError at the first misfit."""
    loads, fresh = {}, []
    for name, module in networks.items():
        if name not in source.weights:
            continue
        theirs, own = source.weights[name], module.state_dict()
        keep = class_embeddings(module, theirs, source.n_classes)
        state = {}
        for key, tensor in own.items():
            if key in keep:
                state[key] = tensor
            elif key not in theirs:
                _misfit(source, f"{name} tensor '{key}' {list(tensor.shape)} is not in the source")
            elif theirs[key].shape != tensor.shape:
                _misfit(source, f"{name} tensor '{key}' is {list(theirs[key].shape)} in the "
                                f"source and {list(tensor.shape)} here")  # fmt: skip
            else:
                state[key] = theirs[key]
        for key in theirs.keys() - own.keys() - keep:
            _misfit(source, f"{name} tensor '{key}' of the source has no place here")
        loads[name] = state
        if n_fresh := sum(k.endswith(("weight", "original")) for k in keep):
            fresh.append(f"{n_fresh} in {name}")
            n_classes = int(module.n_classes)
    notes = list(source.notes)
    if fresh:
        notes.append(
            f"--init-from: class embeddings re-initialised for {n_classes} classes (the source "
            f"has {source.n_classes}): {', '.join(fresh)}"
        )
    return loads, notes


def _misfit(source: InitSource, what: str) -> None:
    raise UsageError(
        f"--init-from '{source.path}' does not fit the new run's networks: {what}; give the "
        "source's architecture (its --preset/--config and model.* settings, the data's size)"
    )


def check(cfg: Any, data_shape: tuple[int, ...], n_classes: int, source: InitSource | None) -> None:
    """Everything ``--init-from`` and ``train.freeze_d`` could refuse, before anything is
    written: builds the new networks once and matches them (the CLI calls it)."""
    G, D, _ = build_networks(cfg.model, data_shape, n_classes)
    freeze_d(D, cfg.train.freeze_d)
    if source is not None:
        plan({"G": G, "D": D, "G_ema": G}, source)


@torch.no_grad()
def start_from(networks: dict[str, nn.Module], source: InitSource, say: bool = True) -> None:
    """Copy the source's weights into the new run's networks (in place: the optimizers built
    on them stay valid and fresh); ``say``: print the notes (rank 0)."""
    loads, notes = plan(networks, source)
    for name, state in loads.items():
        networks[name].load_state_dict(state)
    if say:
        for note in notes:
            print(f"minmax: {note}", file=sys.stderr)


def freeze_d(D: nn.Module, k: int) -> None:
    """FreezeD: D's first ``k`` blocks stop requiring gradients (build the optimizer after)."""
    blocks = d_blocks(D)
    if k > len(blocks):
        raise UsageError(
            f"train.freeze_d={k} but this D ({type(D).__name__}) has {len(blocks)} blocks: "
            f"set it to at most {len(blocks)}"
        )
    for block in blocks[:k]:
        block.requires_grad_(False)


# The record


def write_record(run_dir: Path, source: InitSource | None) -> None:
    """``RUN/init_from.json`` for a fine-tuned run; for any other new run, a leftover one (of a
    run killed before its config.yaml, in the same folder) is removed."""
    from minmax.train.checkpoint import write_json

    path = Path(run_dir) / RECORD
    if source is None:
        path.unlink(missing_ok=True)
    else:
        write_json(path, source.record)


def header(run_dir: Path) -> str:
    """The config.yaml comment line that points to the record, or "" (not fine-tuned)."""
    try:
        record = json.loads((Path(run_dir) / RECORD).read_text())
        where = record["source"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    return f"# fine-tuned from '{where}': {RECORD} holds its config and weights' SHA-256\n"


def check_restart(run_dir: Path) -> None:
    """A fine-tuned run killed before its step-0 checkpoint has nothing to resume from: its
    starting weights were never saved, and resume does not read the source again."""
    path = Path(run_dir) / RECORD
    if path.is_file():
        raise UsageError(
            f"'{run_dir}' is a fine-tuned run that stopped before saving its starting weights: "
            f"delete the folder and start it again with --init-from (the source is in '{path}')"
        )
