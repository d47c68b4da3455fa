"""What a run folder recorded about itself, read for its export: config, logs, machine, data.

Every file is optional (a run copied without its logs, a run from before speed.json) and read
leniently: an export must not fail because a log line is damaged, it says less instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from minmax.store import read_spec


@dataclass
class RunLog:
    """The parts of a run folder an export reports (all but ``spec`` may be empty)."""

    name: str  # the run folder's name, e.g. 00001-mnist-dcgan
    checkpoint: str  # the checkpoint folder exported, e.g. ckpt-000000012800
    spec: dict  # networks.json: {"arch", "G", "D"[, "units"]}
    config: dict = field(default_factory=dict)  # config.yaml, nested sections
    state: dict = field(default_factory=dict)  # state.json: step, images_seen, kimg
    data: dict = field(default_factory=dict)  # fingerprint.json's "data": shape, sha256, ...
    records: list[dict] = field(default_factory=list)  # metrics.jsonl
    machine: str | None = None  # the machine summary the speed settings were chosen on

    def setting(self, dotted: str, default: Any = None) -> Any:
        """A config value by its dotted name (``train.kimg``), or ``default``."""
        node: Any = self.config
        for key in dotted.split("."):
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node

    def final_metrics(self) -> list[dict]:
        """The last record of each evaluated metric (``eval`` records, protocol included)."""
        last: dict[str, dict] = {}
        for record in self.records:
            if record.get("kind") == "eval" and isinstance(record.get("metric"), str):
                last[record["metric"]] = record
        return list(last.values())

    def final_summary(self) -> dict:
        """The run's last ``final`` record: kimg, seconds, stopped_by, toy mode metrics."""
        finals = [r for r in self.records if r.get("kind") == "final"]
        return finals[-1] if finals else {}


def read_run_log(run_dir: Path, checkpoint: Path) -> RunLog:
    """Gather what ``run_dir`` recorded, for the export of ``checkpoint`` (one of its own)."""
    log = RunLog(run_dir.name, checkpoint.name, read_spec(checkpoint))
    config = _yaml(run_dir / "config.yaml")
    log.config = config if isinstance(config, dict) else {}
    log.state = _json(checkpoint / "state.json") or {}
    log.data = (_json(checkpoint / "fingerprint.json") or {}).get("data") or {}
    log.records = _jsonl(run_dir / "metrics.jsonl")
    log.machine = _machine(run_dir, log.records)
    return log


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _jsonl(path: Path) -> list[dict]:
    """Records of a JSON-lines log; a damaged line (a run killed mid-write) is skipped."""
    records = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return records
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _machine(run_dir: Path, records: list[dict]) -> str | None:
    """speed.json's machine, else the first logged record's, else config.yaml's header."""
    speed = _json(run_dir / "speed.json")
    if isinstance(speed, dict) and isinstance(speed.get("machine"), str):
        return speed["machine"]
    for record in records:
        if isinstance(record.get("machine"), str):
            return record["machine"]
    try:
        header = (run_dir / "config.yaml").read_text().splitlines()[:1]
    except (OSError, UnicodeDecodeError):
        return None
    prefix = "# auto resolved on "
    if header and header[0].startswith(prefix):
        return header[0].removeprefix(prefix).rstrip(":")
    return None
