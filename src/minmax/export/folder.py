"""Assemble an export folder from a run: weights, config.json, samples, card; all or nothing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from minmax.errors import UsageError
from minmax.export.card import write_card
from minmax.export.runlog import RunLog, read_run_log
from minmax.models import rebuild
from minmax.sample import generate, save_samples
from minmax.store import (
    CHECKPOINT_NAME,
    EXPORT_CONFIG,
    EXPORT_FORMAT,
    EXPORT_VERSION,
    EXPORT_WEIGHTS,
    find_checkpoint,
    load_module,
)

SAMPLES = "samples.png"
# The card's figure, as 'minmax sample . --n N --seed 0 --out samples.png' draws it: a grid of
# 64 images, or a scatter of 2500 points (sample's default).
SAMPLE_COUNT = {"images": 64, "points": 2500}
ONNX = "model.onnx"
LICENSE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]{0,63}")  # an SPDX-like id: mit, cc-by-4.0


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    network: str = "G_ema",
    license: str | None = None,
    onnx: bool = False,
) -> Path:
    """Write ``network`` of the run's newest checkpoint as a standalone folder ``out``.

    Everything is checked before anything is written, and the folder is built beside ``out``
    under a temporary name, then renamed into place: a failure leaves nothing behind.
    """
    run_dir, out = Path(run_dir), Path(out)
    if network not in ("G", "G_ema"):
        raise UsageError(f"unknown network '{network}': choose G_ema or G")
    if license is not None and not LICENSE.fullmatch(license):
        raise UsageError(
            f"--license '{license}' is not a license id: use one like mit, apache-2.0, "
            "cc-by-4.0 or other (https://hf.co/docs/hub/repositories-licenses)"
        )
    _check_out(out)
    if not run_dir.is_dir():
        raise UsageError(f"run folder '{run_dir}' not found")
    checkpoint = find_checkpoint(run_dir)
    run_root = checkpoint.parent.parent if CHECKPOINT_NAME.fullmatch(checkpoint.name) else run_dir
    if onnx:
        from minmax.export.onnx import require

        require()
    log = read_run_log(run_root, checkpoint)
    G = load_module(checkpoint, network, rebuild(log.spec, "G")).eval().requires_grad_(False)

    out = Path(os.path.abspath(out))  # "." has no name to put a staging folder beside
    created = [p for p in reversed(out.parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # same disk: rename is atomic
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed export with this PID
    try:
        staging.mkdir()
        _write_folder(staging, G, log, checkpoint / f"{network}.safetensors", license, onnx)
        _check_out(out)  # another process may have filled it meanwhile
        os.replace(staging, out)  # replaces an empty folder; fails on a non-empty one
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(err, OSError):  # a full disk, a folder filled meanwhile
            why = err.strerror or str(err)
            raise UsageError(f"could not write '{out}' ({why}): nothing was written") from err
        raise
    return out


def _write_folder(
    folder: Path, G: nn.Module, log: RunLog, weights: Path, license: str | None, onnx: bool
) -> None:
    """Every file of the export, into the (staging) ``folder``."""
    shutil.copyfile(weights, folder / f"{EXPORT_WEIGHTS}.safetensors")  # the very bytes
    config = export_config(G, log, weights.stem)
    (folder / EXPORT_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    n_samples = SAMPLE_COUNT[config["output"]["kind"]]
    x, y = generate(G, n_samples, seed=0)
    save_samples(x, folder / SAMPLES, y)
    if onnx:
        from minmax.export.onnx import export_onnx

        export_onnx(G, folder / ONNX)
    write_card(folder / "README.md", config, log, license, (SAMPLES, n_samples), onnx)


def _check_out(out: Path) -> None:
    if out.is_file() or out.is_symlink():
        raise UsageError(f"--out '{out}' is a file: give a new (or empty) folder")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"--out '{out}' is not empty: give a new (or empty) folder")


def _version() -> str:
    try:
        return metadata.version("minmax")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@torch.no_grad()
def export_config(G: nn.Module, log: RunLog, network: str) -> dict[str, Any]:
    """config.json: how to rebuild G, what it takes and gives, and where it came from."""
    x, _ = generate(G, 1, 0)
    images = x.ndim == 4
    n_classes = int(getattr(G, "n_classes", 0))
    config: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "minmax_version": _version(),
        "network": network,
        "arch": log.spec["arch"],
        "G": log.spec["G"],
    }
    if "units" in log.spec:  # a standardised points run: G gives the data's own units
        config["units"] = log.spec["units"]
    config.update(
        z_dim=int(G.z_dim),
        z_distribution="standard normal N(0, I)",
        n_classes=n_classes,
        class_names=_class_names(log, n_classes),
        output={
            "kind": "images" if images else "points",
            "shape": list(x.shape[1:]),
            "range": [-1.0, 1.0] if images else None,
            "dtype": "float32",
        },
        data=_data(log),
        training={
            "run": log.name,
            "checkpoint": log.checkpoint,
            "preset": log.setting("preset"),
            "kimg": log.state.get("kimg"),
            "step": log.state.get("step"),
        },
    )
    return config


def _data(log: RunLog) -> dict[str, Any]:
    """The training data: its name (a file's name, not its path) and fingerprint."""
    name = log.setting("data.name")
    found = {"name": Path(name).name if isinstance(name, str) else None}
    for key in ("sha256", "shape", "n_classes"):
        if key in log.data:
            found[key] = log.data[key]
    return found


def _class_names(log: RunLog, n_classes: int) -> list[str] | None:
    """The classes' names where the data say them: named datasets, folders of sub-folders."""
    if not n_classes:
        return None
    name = log.setting("data.name")
    names: list[str] | None = None
    if name in ("mnist", "fashion-mnist"):
        from minmax.data.mnist import CLASS_NAMES

        names = list(CLASS_NAMES[name])
    elif name == "cifar10":
        from minmax.data.cifar10 import CLASS_NAMES as CIFAR_NAMES

        names = list(CIFAR_NAMES)
    elif isinstance(name, str) and Path(name).is_dir():  # classes are its sub-folders, sorted
        names = sorted(p.name for p in Path(name).iterdir() if p.is_dir() and p.name[0] != ".")
    return names if names is not None and len(names) == n_classes else None
