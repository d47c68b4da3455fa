"""What a checkpoint must agree with to be resumed: the config that shapes training, the data.

Another model width fails loudly when the weights are loaded, but another learning rate,
objective, seed or dataset would quietly continue a *different* run under the old name. So
each checkpoint stores ``fingerprint(cfg, source)`` and a resume compares it.

Left out, because they may change on resume: the run's length and wall-time cap
(``train.kimg``, ``train.max_minutes``), how often it logs, checkpoints and draws grids,
how many checkpoints it keeps, its thread count, everything under ``eval``, the preset's
label, and where the data are found (``data.name``, ``data.root``, ``data.download``: a moved
file is the same data; the data's content is fingerprinted instead).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from minmax.config import Config
from minmax.errors import UsageError

if TYPE_CHECKING:
    from minmax.data.sources import Source

FINGERPRINT = "fingerprint.json"
RESUMABLE = frozenset(
    {
        "preset",
        "data.name",
        "data.root",
        "data.download",
        "train.kimg",
        "train.max_minutes",
        "train.threads",
        "train.log_every_steps",
        "train.checkpoint_every_kimg",
        "train.keep_checkpoints",
        "train.grid_every_kimg",
        # how it runs, not what it trains: resume on another machine, device or rank count
        "train.device",
        "train.precision",
        "train.compile",
        "train.channels_last",
        "train.adam",
        "train.accum_steps",
        "train.dist_timeout_s",
        "data.skip_bad",
        # what to do at a non-finite value: a diverged run is resumed with rollback switched on
        "train.on_nonfinite",
        "train.rollback_lr_factor",
        "train.max_rollbacks",
        # its effect, the map a points file is standardised by, is in the data's fingerprint
        "data.standardize",
    }
)
RESUMABLE_SECTIONS = frozenset({"eval"})


def fingerprint(cfg: Config, source: Source) -> dict[str, dict[str, Any]]:
    """{"config": the resolved config minus RESUMABLE, "data": shape, classes, content hash}."""
    config = {
        key: value
        for key, value in _flatten(cfg.to_dict()).items()
        if key not in RESUMABLE and key.split(".")[0] not in RESUMABLE_SECTIONS
    }
    return {"config": config, "data": data_fingerprint(source)}


def data_fingerprint(source: Source) -> dict[str, Any]:
    """Shape, classes and a SHA-256 of the data's tensors (images and labels, a toy density's
    parameters or a points file's rows): ~0.3 s for CIFAR-10's 150 MB, once per run. Data
    standardised for training add the map, so a run from before standardisation (or with
    ``data.standardize=off``) is not continued on standardised data, nor the reverse."""
    dataset = getattr(source, "dataset", None)
    if dataset is not None:
        # Data composed on demand (stacked-mnist) name the tensors that define them instead.
        tensors = getattr(dataset, "defining_tensors", None)
        content = tensors() if tensors else {"images": dataset.images, "labels": dataset.labels}
    else:
        density = source.density
        content = {"kind": type(density).__name__}
        content.update(
            (k, v) for k, v in vars(density).items() if isinstance(v, Tensor | int | float | str)
        )
    digest = hashlib.sha256()
    for key, value in sorted(content.items()):
        digest.update(key.encode())
        if isinstance(value, Tensor):
            value = value.detach().cpu().contiguous()
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy())
        else:
            digest.update(repr(value).encode())
    found = {
        "shape": list(source.shape),
        "n_classes": source.n_classes,
        "sha256": digest.hexdigest(),
    }
    units = getattr(source, "units", None)  # standardised for training (minmax.data.standardize)
    return found if units is None else {**found, "units": units.to_dict()}


def read_fingerprint(folder: Path) -> dict | None:
    """The fingerprint stored with a checkpoint; None for checkpoints written without one."""
    path = Path(folder) / FINGERPRINT
    return json.loads(path.read_text()) if path.is_file() else None


def check_fingerprint(folder: Path, fingerprint: dict) -> None:
    """Refuse (UsageError) to resume ``folder`` with another config or dataset.

    Checkpoints without a fingerprint (older runs) have nothing to compare and pass. A key
    added to the config after the checkpoint was written passes at its default value, which is
    how the older version trained: upgrading minmax must not strand a run.
    """
    stored = read_fingerprint(folder)
    if stored is None:
        return
    old, new = _flatten(stored), _flatten(_json_round_trip(fingerprint))
    defaults = _flatten(_json_round_trip({"config": _flatten(Config().to_dict())}))
    changed = [
        key
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
        and not (key not in old and key in defaults and new.get(key) == defaults[key])
    ]
    if not changed:
        return
    shown = [
        f"{key.removeprefix('config.')} {_short(old.get(key))} -> {_short(new.get(key))}"
        for key in changed[:3]
    ]
    more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
    what = "data" if all(k.startswith("data.") for k in changed) else "config"
    raise UsageError(
        f"cannot resume from '{folder}': it was trained with other {what} "
        f"({'; '.join(shown)}{more}): resume with the run's own config and data, "
        "or start a new run with --out"
    )


def _json_round_trip(data: dict) -> dict:
    """What ``data`` reads back as from JSON (tuples become lists), to compare like with like."""
    return json.loads(json.dumps(data))


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else text[:21] + "..."
