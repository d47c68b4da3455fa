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
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import Tensor, nn

from minmax.errors import UsageError
from minmax.train.fingerprint import FINGERPRINT
from minmax.train.fingerprint import check_fingerprint as check_fingerprint  # re-exported
from minmax.train.fingerprint import read_fingerprint as read_fingerprint  # re-exported

CHECKPOINT = "checkpoint"
MANIFEST = "manifest.json"
BEST = "best.json"
_NAME = re.compile(r"ckpt-(\d{12})(\.old|\.tmp)?")
_RANK = {None: 2, ".old": 1, ".tmp": 0}  # at equal images seen: finished > mid-swap > staging


class NoCheckpointError(UsageError):
    """The run folder holds no finished checkpoint, corrupt or not (at most unfinished
    staging ones): its run stopped before its first checkpoint was complete, and continues
    from step 0 (``minmax train --resume``)."""


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
            if any(not p.name.endswith(".tmp") for p in _candidates(root))
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
    best = _read_best(root)
    if best is None or not (root / best["checkpoint"]).is_dir() or score < best["score"]:
        _write_file(root / BEST, _json_bytes({"checkpoint": name, "score": score}))


def _read_best(root: Path) -> dict | None:
    try:
        best = json.loads((root / BEST).read_text())
        match = _NAME.fullmatch(best["checkpoint"])
        if match and not match.group(2) and isinstance(best["score"], int | float):
            return best
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _candidates(root: Path) -> list[Path]:
    """Checkpoint folders under ``root``, newest first (finished before mid-swap/staging)."""
    found = []
    for path in root.iterdir() if root.is_dir() else ():
        if (match := _NAME.fullmatch(path.name)) and path.is_dir():
            found.append((int(match.group(1)), _RANK[match.group(2)], path))
    return [path for *_, path in sorted(found, reverse=True)]


def _prune(root: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints and the best; never a staging folder."""
    best = _read_best(root)
    kept = []
    for path in _candidates(root):
        if path.name.endswith(".old") and path.with_suffix("").is_dir():
            shutil.rmtree(path, ignore_errors=True)  # left mid-swap; the new one is in place
        elif not path.name.endswith(".tmp"):
            kept.append(path)
    for path in kept[keep:]:
        if best is None or path.name != best["checkpoint"]:
            shutil.rmtree(path, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_checkpoint(folder: Path) -> str | None:
    """What is wrong with ``folder`` (unfinished, a file missing, altered...), or None."""
    if folder.name.endswith(".tmp"):
        return "unfinished (its writer stopped, or is still writing)"
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
        listed = {name: (int(e["bytes"]), str(e["sha256"])) for name, e in files.items()}
    except FileNotFoundError:
        return f"no {MANIFEST}: incomplete"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"unreadable {MANIFEST} ({type(err).__name__}: {err})"
    present = {p.name for p in folder.iterdir()} - {MANIFEST}
    if extra := sorted(present - set(listed)):
        return f"files not in {MANIFEST}: {', '.join(extra)}"
    if "state.json" not in listed:
        return f"{MANIFEST} lists no state.json"
    for name, (size, sha256) in listed.items():
        path = folder / name
        if name not in present or not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {MANIFEST} says {size}"
        if _sha256(path) != sha256:
            return f"{name} does not match its SHA-256 in {MANIFEST} (corrupted)"
    return None


def _checkpoint_root(run_dir: Path) -> Path:
    """``RUN_DIR/checkpoint``, or ``run_dir`` itself when given that folder."""
    root = run_dir / CHECKPOINT
    if not root.is_dir() and run_dir.is_dir() and _candidates(run_dir):
        return run_dir
    return root


def find_checkpoint(run_dir: Path) -> Path:
    """The newest checkpoint whose files all match their manifest.

    Newer ones that are unfinished or corrupt are named on stderr, one line each, and
    skipped: loading them would continue another run, or fail later. Raises
    NoCheckpointError when none was ever finished (a run killed before or during its first
    checkpoint), and a UsageError saying so when every finished one is corrupt.
    """
    run_dir = Path(run_dir)
    root = _checkpoint_root(run_dir)
    corrupt = unfinished = 0
    for folder in _candidates(root):
        problem = verify_checkpoint(folder)
        if problem is None:
            return folder
        unfinished += folder.name.endswith(".tmp")
        corrupt += not folder.name.endswith(".tmp")
        print(f"minmax: skipping checkpoint '{folder}': {problem}", file=sys.stderr)
    for legacy in (root, run_dir / f"{CHECKPOINT}.old"):  # written before manifests existed
        if (legacy / "state.json").is_file():
            return legacy
    if corrupt:  # finished once, damaged since: starting over would hide that
        what = f"all {corrupt} are corrupt"
        if unfinished:
            what = f"{corrupt} are corrupt and {unfinished} unfinished"
        raise UsageError(
            f"no usable checkpoint in '{run_dir}': {what} (listed above); restore them from a "
            f"copy, or move '{root}' aside and resume to start over from step 0"
        )
    if (run_dir / "config.yaml").is_file():
        left = f" ({unfinished} unfinished, listed above)" if unfinished else ""
        raise NoCheckpointError(
            f"no checkpoint in '{run_dir}' yet{left}: its run has not finished its first one "
            f"(if it was stopped, 'minmax train --resume {run_dir}' starts it over from step 0)"
        )
    raise NoCheckpointError(
        f"no checkpoint in '{run_dir}': give a run folder written by 'minmax train'"
    )


def best_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the lowest score passed to save_checkpoint, if it verifies."""
    root = _checkpoint_root(Path(run_dir))
    best = _read_best(root)
    if best is None or not (folder := root / best["checkpoint"]).is_dir():
        return None
    if (problem := verify_checkpoint(folder)) is not None:
        print(f"minmax: skipping checkpoint '{folder}': {problem}", file=sys.stderr)
        return None
    return folder


def read_spec(folder: Path) -> dict:
    return json.loads((folder / "networks.json").read_text())


def load_module(folder: Path, name: str, module: nn.Module) -> nn.Module:
    """Load ``name``.safetensors into ``module``; shape mismatches become UsageErrors."""
    path = folder / f"{name}.safetensors"
    try:
        tensors = load_file(str(path))
    except (FileNotFoundError, SafetensorError) as err:
        raise UsageError(f"cannot read '{path}': {err}") from None
    # NaN/inf weights would only show up later as NaN losses or blank samples: refuse them here.
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UsageError(
                f"'{path}' holds non-finite values (NaN or inf) in tensor '{key}': the run "
                "diverged before it was saved; use an earlier checkpoint"
            )
    try:
        module.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise UsageError(
            f"'{path}' does not match the network it is loaded into ({first[0].strip()}): "
            "was it written by another architecture or config?"
        ) from None
    return module


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
