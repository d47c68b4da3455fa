"""Metrics as JSON lines: one object per line, appended, flushed (safe to tail or resume)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan; keep them readable
    return value


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({k: _clean(v) for k, v in record.items()}) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not Path(path).is_file():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


RESTART_ASIDE = {
    "metrics.jsonl": "metrics.before-restart.jsonl",
    "tensorboard": "tensorboard.before-restart",
}


def set_aside(run_dir: Path) -> str:
    """Rename the logs of a run that died before its first checkpoint (``metrics.jsonl``,
    ``tensorboard/``) to ``*.before-restart``; returns a note naming them, or "".

    A run continued from a checkpoint appends to its log: what it logged up to that
    checkpoint is its own (the few steps a dead attempt logged after it appear twice, with
    the same values). A run started over from step 0 shares nothing with the dead attempt
    but the config: every old line would be a second copy of a step, or, after other
    overrides (a lower learning rate after a divergence), another run's numbers passing
    for this one's. So they go aside, not away: they may show why the attempt died. A later
    restart replaces them (every earlier attempt died before its first checkpoint).
    """
    moved = []
    for name, aside_name in RESTART_ASIDE.items():
        path, aside = Path(run_dir) / name, Path(run_dir) / aside_name
        if not path.exists():
            continue
        shutil.rmtree(aside, ignore_errors=True)  # a folder, from an earlier restart
        aside.unlink(missing_ok=True)
        os.replace(path, aside)
        moved.append(f"{name} moved to {aside_name}")
    return f" (the dead attempt's {', '.join(moved)})" if moved else ""


class Logger:
    """Training metrics to ``metrics.jsonl``, and to TensorBoard when it is installed.

    TensorBoard is an optional extra (``pip install -e '.[tensorboard]'``): without it the
    JSON lines are the whole record, and nothing else changes.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.board = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # the optional extra is not installed
                pass
            else:
                self.board = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        append_jsonl(self.path, record)

    def scalars(self, count: Any, values: dict[str, float]) -> None:
        """One ``kind: train`` line at ``count`` (step, kimg); values also go to TensorBoard."""
        self.write({"kind": "train", "step": count.step, "kimg": count.kimg, **values})
        self.scalars_board({k: v for k, v in values.items() if k != "seconds"}, count)

    def scalars_board(self, values: dict[str, float], count: Any) -> None:
        """Scalars to TensorBoard only (when installed)."""
        if self.board is not None:
            for name, value in values.items():
                self.board.add_scalar(name, value, global_step=count.images_seen)

    def image(self, name: str, image: Any, count: Any) -> None:
        """An (H, W, C) uint8 array, e.g. a sample grid (TensorBoard only; PNGs are on disk)."""
        if self.board is not None:
            self.board.add_image(name, image, global_step=count.images_seen, dataformats="HWC")

    def close(self) -> None:
        if self.board is not None:
            self.board.close()
