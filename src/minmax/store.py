"""Reading trained networks from disk: a run's checkpoints, or an export; never training code.

The trainer writes checkpoints (``minmax.train.checkpoint``) and ``minmax export`` writes
export folders (``minmax.export``); everything that only *reads* them lives here, so that
sampling (``minmax.sample``) and anyone loading a shared generator import no training code.
Tensors come from safetensors and metadata from JSON: nothing read here is ever unpickled.

Layout of ``RUN_DIR/checkpoint/`` (written by ``minmax.train.checkpoint.save_checkpoint``)::

    ckpt-000000012800/       one folder per checkpoint, named by the real images seen
      networks.json          {"arch", "G": kwargs, "D": kwargs}: rebuilds the modules by name
      G.safetensors, D.safetensors, G_ema.safetensors, training.safetensors, state.json, ...
      manifest.json          SHA-256 and size of every file above: written last
    best.json                {"checkpoint": "ckpt-...", "score": s}: the lowest score passed

An export folder holds ``config.json`` (``EXPORT_FORMAT``, ``format_version``, and the
networks spec of G: ``arch``, ``G`` kwargs, ``units`` for standardised points) beside
``model.safetensors``; ``minmax.export`` documents the rest of its fields.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from minmax.errors import UsageError

CHECKPOINT = "checkpoint"
MANIFEST = "manifest.json"
BEST = "best.json"
CHECKPOINT_NAME = re.compile(r"ckpt-(\d{12})(\.old|\.tmp)?")
_RANK = {None: 2, ".old": 1, ".tmp": 0}  # at equal images seen: finished > mid-swap > staging

EXPORT_FORMAT = "minmax-generator"
EXPORT_VERSION = 1  # raised when a reader of the old version could misread a new folder
EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model"  # model.safetensors, the Hub's name for a repository's weights


class NoCheckpointError(UsageError):
    """The run folder holds no finished checkpoint, corrupt or not (at most unfinished
    staging ones): its run stopped before its first checkpoint was complete, and continues
    from step 0 (``minmax train --resume``)."""


# Checkpoints


def read_best(root: Path) -> dict | None:
    """best.json under ``root`` when it is well formed, else None."""
    try:
        best = json.loads((root / BEST).read_text())
        match = CHECKPOINT_NAME.fullmatch(best["checkpoint"])
        if match and not match.group(2) and isinstance(best["score"], int | float):
            return best
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def checkpoint_folders(root: Path) -> list[Path]:
    """Checkpoint folders under ``root``, newest first (finished before mid-swap/staging)."""
    found = []
    for path in root.iterdir() if root.is_dir() else ():
        if (match := CHECKPOINT_NAME.fullmatch(path.name)) and path.is_dir():
            found.append((int(match.group(1)), _RANK[match.group(2)], path))
    return [path for *_, path in sorted(found, reverse=True)]


def file_sha256(path: Path) -> str:
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
        if file_sha256(path) != sha256:
            return f"{name} does not match its SHA-256 in {MANIFEST} (corrupted)"
    return None


def checkpoint_root(run_dir: Path) -> Path:
    """``RUN_DIR/checkpoint``, or ``run_dir`` itself when given that folder."""
    root = run_dir / CHECKPOINT
    if not root.is_dir() and run_dir.is_dir() and checkpoint_folders(run_dir):
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
    root = checkpoint_root(run_dir)
    corrupt = unfinished = 0
    for folder in checkpoint_folders(root):
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
    root = checkpoint_root(Path(run_dir))
    best = read_best(root)
    if best is None or not (folder := root / best["checkpoint"]).is_dir():
        return None
    if (problem := verify_checkpoint(folder)) is not None:
        print(f"minmax: skipping checkpoint '{folder}': {problem}", file=sys.stderr)
        return None
    return folder


def read_spec(folder: Path) -> dict:
    """A checkpoint's networks.json: ``{"arch", "G", "D"}`` (and ``"units"``)."""
    return json.loads((folder / "networks.json").read_text())


# Weights


def read_tensors(
    path: Path,
    prefix: str = "",
    fix: str = "the run diverged before it was saved; use an earlier checkpoint",
) -> dict[str, Tensor]:
    """A safetensors file's tensors, refusing non-finite ones: NaN/inf weights would only show
    up later as NaN losses or blank samples. ``prefix`` starts each error (e.g. the option)."""
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise UsageError(f"{prefix}cannot read '{path}': {err}") from None
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UsageError(
                f"{prefix}'{path}' holds non-finite values (NaN or inf) in tensor '{key}': {fix}"
            )
    return tensors


def load_module(folder: Path, name: str, module: nn.Module) -> nn.Module:
    """Load ``name``.safetensors into ``module``; shape mismatches become UsageErrors."""
    path = folder / f"{name}.safetensors"
    tensors = read_tensors(path)
    try:
        module.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise UsageError(
            f"'{path}' does not match the network it is loaded into ({first[0].strip()}): "
            "was it written by another architecture or config?"
        ) from None
    return module


# Exports


def is_export(folder: Path) -> bool:
    """Whether ``folder`` looks like an export (a config.json) rather than a run folder."""
    return (Path(folder) / EXPORT_CONFIG).is_file()


def read_export(folder: Path) -> dict:
    """An export's config.json, checked: its format, a version this minmax reads, G's spec.

    Whether ``arch`` names a known architecture and the weights fit are checked where G is
    rebuilt (``minmax.sample.load_generator``), by the registry and ``load_module``.
    """
    path = Path(folder) / EXPORT_CONFIG
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"cannot read '{path}': {err}") from None
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise UsageError(
            f"'{path}' is not a minmax export (its format is not '{EXPORT_FORMAT}'): "
            "give a folder written by 'minmax export' or a run folder"
        )
    version = config.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise UsageError(f"'{path}' has no valid format_version (got {version!r})")
    if version > EXPORT_VERSION:
        raise UsageError(
            f"'{path}' has format version {version}, newer than this minmax reads "
            f"({EXPORT_VERSION}; written by minmax {config.get('minmax_version', '?')}): "
            "upgrade minmax"
        )
    if not isinstance(config.get("arch"), str) or not isinstance(config.get("G"), dict):
        raise UsageError(f"'{path}' lacks the generator's architecture (arch) or arguments (G)")
    return config
