"""Metrics as JSON lines: one object per line, appended, flushed (safe to tail or resume)."""

from __future__ import annotations

import json
import math
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
