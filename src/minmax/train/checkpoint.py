"""Checkpoints: tensors in safetensors, metadata in JSON; each one whole, or never loaded.

Layout of ``RUN_DIR/checkpoint/``::

    ckpt-000000012800/       one folder per checkpoint, named by the real images seen
      networks.json          {"arch", "G": kwargs, "D": kwargs}: rebuilds the modules by name
      G.safetensors, D.safetensors, G_ema.safetensors
      training.safetensors   optimizer moments and RNG states
      state.json             step, images seen, optimizer hyper-parameters
      fingerprint.json       the config and data a resume must agree with (optional)
      manifest.json          SHA-256 and size of every file above: written last
    best.json                {"checkpoint": "ckpt-...", "score": s}: the lowest score passed

Why so careful: a run killed at any instant (pre-emption, the OOM killer, a full disk) must
resume from a checkpoint that is whole. Each file is written under a temporary name, fsynced
and renamed; the folder is staged as ``ckpt-N.tmp`` and renamed once its manifest is durable.
``find_checkpoint`` still re-hashes every file (bit rot, a half-copied run folder) and skips,
naming it on stderr, any checkpoint that does not verify. Hashing reads the checkpoint once
(~1 s per GB on one core): nothing for toy and DCGAN runs, seconds for a large BigGAN.

The newest ``keep`` checkpoints are kept, and the best one. Runs written before this layout
(files directly in ``RUN_DIR/checkpoint/``, no manifest) are still read, unverified.

This module writes and resumes; what only reads a checkpoint (``find_checkpoint``,
``read_spec``, ``load_module``...) lives in ``minmax.store``, so that sampling imports no
training code, and is re-exported here.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save
from torch import Tensor, nn

from minmax.errors import UsageError
from minmax.store import BEST, CHECKPOINT, MANIFEST, checkpoint_folders, read_best
from minmax.store import NoCheckpointError as NoCheckpointError  # re-exported
from minmax.store import best_checkpoint as best_checkpoint  # re-exported
from minmax.store import find_checkpoint as find_checkpoint  # re-exported
from minmax.store import load_module as load_module  # re-exported
from minmax.store import read_spec as read_spec  # re-exported
from minmax.store import verify_checkpoint as verify_checkpoint  # re-exported
from minmax.train.fingerprint import FINGERPRINT
from minmax.train.fingerprint import check_fingerprint as check_fingerprint  # re-exported
from minmax.train.fingerprint import read_fingerprint as read_fingerprint  # re-exported


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()


def _write_file(path: Path, data: bytes) -> None:
    """All of ``data`` at ``path``, or nothing there: temporary name, fsync, rename."""
    part = path.with_name(path.name + ".part")
    with open(part, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)


def _fsync_dir(folder: Path) -> None:
    """Make the renames inside ``folder`` durable (POSIX; Windows cannot fsync a folder)."""
    if os.name == "posix":
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: Path, data: Any) -> None:
    _write_file(path, _json_bytes(data))


def write_text(path: Path, text: str) -> None:
    """``text`` at ``path`` whole, or the file as it was (a run's config.yaml: a run killed
    while writing it must not leave half a config that a resume would read)."""
    _write_file(path, text.encode())


def _module_tensors(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}


def _optimizer_flat(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split an optimizer state_dict into tensors (safetensors) and the rest (JSON)."""
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            if isinstance(value, Tensor):
                tensors[f"{name}/{index}/{key}"] = value.detach().contiguous().clone()
            else:
                scalars[f"{index}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_unflat(name: str, tensors: dict[str, Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(f"{name}/"):
            _, index, slot = key.split("/", 2)
            state.setdefault(int(index), {})[slot] = value
    for key, value in meta["scalars"].items():
        index, slot = key.split("/", 1)
        state.setdefault(int(index), {})[slot] = value
    groups = [
        {**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def _serialize(
    networks: dict[str, nn.Module],
    spec: dict,
    optimizers: dict[str, torch.optim.Optimizer],
    rng: dict[str, Tensor],
    state: dict[str, Any],
    fingerprint: dict | None,
) -> dict[str, bytes]:
    """Every file of a checkpoint as bytes, in the order they are written."""
    files = {"networks.json": _json_bytes(spec)}
    for name, module in networks.items():
        files[f"{name}.safetensors"] = save(_module_tensors(module))
    tensors: dict[str, Tensor] = {f"rng/{k}": v.contiguous().clone() for k, v in rng.items()}
    opt_meta = {}
    for name, opt in optimizers.items():
        flat, opt_meta[name] = _optimizer_flat(name, opt)
        tensors.update(flat)
    files["training.safetensors"] = save(tensors)
    files["state.json"] = _json_bytes({**state, "optimizers": opt_meta})
    if fingerprint is not None:
        files[FINGERPRINT] = _json_bytes(fingerprint)
    return files


def save_checkpoint(
    run_dir: Path,
    networks: dict[str, nn.Module],
    spec: dict,
    optimizers: dict[str, torch.optim.Optimizer],
    rng: dict[str, Tensor],
    state: dict[str, Any],
    *,
    keep: int = 3,
    score: float | None = None,
    fingerprint: dict | None = None,
) -> Path:
    """Write ``RUN_DIR/checkpoint/ckpt-<state["images_seen"]>/``; prune to ``keep`` + the best.

    ``score`` (lower is better, e.g. an FID) makes this checkpoint the best one when it beats
    best.json's. A failed write (a full disk) removes its staging folder and raises a
    UsageError that says so; the checkpoints written before stay as they were.
    """
    if keep < 1:
        raise UsageError(f"'train.keep_checkpoints' must be at least 1, got {keep}")
    root = Path(run_dir) / CHECKPOINT
    name = f"ckpt-{int(state.get('images_seen', 0)):012d}"
    final, staging = root / name, root / f"{name}.tmp"
    files = _serialize(networks, spec, optimizers, rng, state, fingerprint)
    try:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob("ckpt-*.tmp"):  # left by a writer that was killed
            shutil.rmtree(stale, ignore_errors=True)
        staging.mkdir()
        manifest = {}
        for filename, data in files.items():
            _write_file(staging / filename, data)
            manifest[filename] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        _write_file(staging / MANIFEST, _json_bytes({"files": manifest}))
        _fsync_dir(staging)
        _swap_in(staging, final)
        if score is not None:
            _update_best(root, name, score)
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        fix = "free disk space" if full else "fix that"
        then = (
            f"the earlier checkpoints are intact: {fix}, then continue with "
            f"'minmax train --resume {run_dir}'"
            if any(not p.name.endswith(".tmp") for p in checkpoint_folders(root))
            else f"there is no earlier checkpoint: {fix} and start the run again"
        )
        why = "the disk is full" if full else (err.strerror or str(err))
        raise UsageError(f"could not write checkpoint '{final}' ({why}); {then}") from err
    _prune(root, keep)
    return final


def _swap_in(staging: Path, final: Path) -> None:
    """Rename the staged folder into place; a folder already there (the same images seen,
    written again) stays as ``.old`` until the new one is in, so a crash keeps one of them."""
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(staging, final)
    _fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def _update_best(root: Path, name: str, score: float) -> None:
    if not math.isfinite(score):  # a NaN score is never the best
        return
    best = read_best(root)
    if best is None or not (root / best["checkpoint"]).is_dir() or score < best["score"]:
        _write_file(root / BEST, _json_bytes({"checkpoint": name, "score": score}))


def _prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints and the best; never a staging folder."""
    best = read_best(root)
    kept = []
    for path in checkpoint_folders(root):
        if path.name.endswith(".old") and path.with_suffix("").is_dir():
            shutil.rmtree(path, ignore_errors=True)  # left mid-swap; the new one is in place
        elif not path.name.endswith(".tmp"):
            kept.append(path)
    for path in kept[keep:]:
        if best is None or path.name != best["checkpoint"]:
            shutil.rmtree(path, ignore_errors=True)


def load_training(
    folder: Path, optimizers: dict[str, torch.optim.Optimizer]
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Restore optimizer states; return (state.json, RNG states)."""
    state = json.loads((folder / "state.json").read_text())
    tensors = load_file(str(folder / "training.safetensors"))
    for name, opt in optimizers.items():
        opt.load_state_dict(_optimizer_unflat(name, tensors, state["optimizers"][name]))
        _match_layouts(opt)
    rng = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("rng/")}
    return state, rng


def _match_layouts(opt: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor (Adam's moments) its parameter's memory layout.

    Files hold contiguous tensors; a channels-last run's weights are NHWC. With mixed layouts
    the resumed steps computed different numbers (measured: a resumed channels-last run drifted
    from the uninterrupted one), so resume would no longer be exact.
    """
    for group in opt.param_groups:
        for p in group["params"]:
            for key, value in opt.state.get(p, {}).items():
                moment = torch.is_tensor(value) and value.shape == p.shape
                if moment and value.stride() != p.stride():
                    opt.state[p][key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
