"""A run's report: one self-contained HTML page of everything its folder records.

After a run the evidence of how it went is spread over ``metrics.jsonl``, PNG files and
``config.yaml``; ``write_report`` gathers it into ``RUN/report.html``: losses and every logged
metric over kimg with warnings, rollbacks and resumes marked on the same axis, sample grids
over time, the final metrics, the machine and the resolved config. The page needs no server
and no network (charts are matplotlib SVGs and images are PNGs, all as ``data:`` URIs; no
script), so it opens from disk and can be attached to an issue. It reports what there is: a
run still training, killed early, or with a truncated last metrics line gets a page that says
what is missing. Nothing here imports torch: ``minmax report`` is quick on a laptop.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from minmax.errors import UsageError

REPORT_FILE = "report.html"
MAX_GRIDS = 12  # sample grids shown, evenly spaced over the run (the last one included)
GRID_PIXELS = 320 * 320  # most pixels of a grid in the strip (8×8 32-px tiles stay as they are)
IMAGE_PIXELS = 800 * 800  # most pixels of the final samples and the toy plots
MAX_POINTS = 2000  # points per curve (every k-th beyond that): the page stays small
# Numbers in records that are bookkeeping or protocol, not metrics to plot.
NOT_METRICS = {"step", "kimg", "seconds", "seconds_total", "n", "std", "n_samples",
               "n_classes", "min_share", "n_std", "to_kimg", "lr_scale"}  # fmt: skip
# Each event's mark on every chart: (colour, line style).
EVENT_STYLE = {"warning": ("tab:orange", "--"), "rollback": ("tab:red", "-"),
               "diverged": ("black", "-"), "resume": ("grey", ":")}  # fmt: skip


@dataclass
class Event:
    """Something that happened at ``kimg`` (None: not placed on the axis)."""

    kimg: float | None
    kind: str
    text: str


def read_records(path: Path) -> tuple[list[dict], int]:
    """The JSON objects of a metrics file, and how many lines were not readable (a line cut
    short by a crash mid-write is skipped, not fatal)."""
    if not path.is_file():
        return [], 0
    records, bad = [], 0
    for line in filter(str.strip, path.read_text("utf-8", "replace").splitlines()):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


def _number(value: object) -> float | None:
    """A finite float from a record's value ("inf"/"nan" are how the log writes non-finite)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def curves(records: list[dict]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """Charts of named (kimg, value) curves: "losses" (every ``loss_*``), one chart per other
    training scalar, one per scored metric (its fields, e.g. precision and recall). A step
    logged twice (the steps a dead attempt logged after its last checkpoint, or before a
    rollback) keeps its last value, so curves never run backwards."""
    points: dict[tuple[str, str], dict[float, float]] = {}
    for r in records:
        kimg = _number(r.get("kimg"))
        if kimg is None or r.get("kind") not in ("train", "eval"):
            continue
        for key, value in r.items():
            y = None if key in NOT_METRICS or isinstance(value, str) else _number(value)
            if y is None:  # bookkeeping, text, or non-finite (not drawable)
                continue
            if r["kind"] == "train":
                chart = "losses" if key.startswith("loss") else key
                name = key
            else:
                chart = str(r.get("metric", "eval"))
                name = chart if key == "value" else f"{chart} {key}"
            points.setdefault((chart, name), {})[kimg] = y
    out: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    for (chart, name), by_kimg in points.items():
        xs = sorted(by_kimg)[:: max(1, math.ceil(len(by_kimg) / MAX_POINTS))]
        out.setdefault(chart, {})[name] = (xs, [by_kimg[x] for x in xs])
    return out


def events(records: list[dict]) -> list[Event]:
    """Warnings, rollbacks, a divergence, and resumes (each ``speed`` record after the first
    starts a new process), in the order they were logged."""
    logged = [(k, s) for r in records if r.get("kind") == "train"
              and (k := _number(r.get("kimg"))) and (s := _number(r.get("step")))]  # fmt: skip
    rate = logged[0][0] / logged[0][1] if logged else None  # kimg per step
    out, starts = [], 0
    for r in records:
        kind, kimg = r.get("kind"), _number(r.get("kimg"))
        if kind == "warning":
            out.append(Event(kimg, "warning", str(r.get("message", ""))))
        elif kind in ("rollback", "diverged"):
            names = [str(n) for n in r.get("nonfinite", [])]
            what = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            text = f"non-finite {what or 'values'}"
            if kind == "rollback":
                text += f": rolled back to {r.get('to_kimg')} kimg, lr × {r.get('lr_scale')}"
            else:
                text += f" after {r.get('rollbacks', 0)} rollback(s): stopped (see diverged/)"
            out.append(Event(kimg, kind, text))
        elif kind == "speed":
            starts += 1
            step = _number(r.get("step"))
            if starts > 1:  # kimg from the step: the speed record has only the step
                at = step * rate if step is not None and rate else None
                out.append(Event(at, "resume", f"resumed at step {r.get('step')}"))
    return out


def _svg_chart(title: str, lines: dict[str, tuple[list[float], list[float]]],
               marks: list[Event], kimg_max: float) -> str:  # fmt: skip
    """One chart as an SVG ``data:`` URI, with the events as vertical lines; every chart
    spans 0..``kimg_max``, so that they line up on one time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"svg.fonttype": "none"}):  # text stays text: smaller, selectable
        fig, ax = plt.subplots(figsize=(7, 2.8))
        for name, (xs, ys) in lines.items():
            ax.plot(xs, ys, label=name.replace("$", r"\$"), lw=1.2,
                    marker="o" if len(xs) < 20 else None, ms=3)  # fmt: skip
        shown = set()
        for event in marks:
            if event.kimg is None:
                continue
            color, style = EVENT_STYLE[event.kind]
            label = None if event.kind in shown else event.kind
            ax.axvline(event.kimg, color=color, ls=style, lw=1, label=label)
            shown.add(event.kind)
        ax.set_xlim(0, kimg_max * 1.02 or 1)
        ax.set_xlabel("kimg")
        ax.set_title(title.replace("$", r"\$"), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        fig.subplots_adjust(left=0.1, right=0.72, bottom=0.17, top=0.89)  # the same in all
        buffer = io.BytesIO()
        no_metadata = {"Date": None, "Creator": None, "Format": None, "Type": None}
        fig.savefig(buffer, format="svg", metadata=no_metadata)
        plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def _png_uri(path: Path, max_pixels: int) -> str:
    """A PNG file as a ``data:`` URI, downscaled to at most ``max_pixels`` (by area, so that a
    wide grid of a class per row keeps its height)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        scale = math.sqrt(max_pixels / (image.width * image.height))
        if scale < 1:
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def pick_grids(run_dir: Path, limit: int = MAX_GRIDS) -> list[Path]:
    """At most ``limit`` of ``grids/kimg*.png``, evenly spaced, the first and last included."""
    grids = sorted((run_dir / "grids").glob("kimg*.png"))  # zero-padded: name order = kimg
    if len(grids) <= limit:
        return grids
    return [grids[round(i * (len(grids) - 1) / (limit - 1))] for i in range(limit)]


def _e(value: object) -> str:
    return html.escape(str(value))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _long_list(value: object) -> bool:
    """Lists too long for a table cell (stacked-MNIST's 1,000 mode counts): JSON only."""
    return isinstance(value, list) and len(value) > 20


def _table(rows: list[tuple[object, ...]], head: tuple[str, ...] = ()) -> str:
    top = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>" if head else ""
    body = "".join("<tr>" + "".join(f"<td>{_e(_fmt(c))}</td>" for c in row) + "</tr>"
                   for row in rows)  # fmt: skip
    return f"<table>{top}{body}</table>"


def _status(run_dir: Path, records: list[dict]) -> str:
    """One line: finished, diverged, or (no final record) still training or stopped early."""
    ends = [r for r in records if r.get("kind") in ("train", "final", "diverged")]
    last = ends[-1] if ends else {}
    kimg = _number(last.get("kimg"))
    at = f" at {kimg:g} kimg" if kimg is not None else ""
    if last.get("kind") == "final":
        return f"finished{at}, stopped by {last.get('stopped_by', '?')}"
    if last.get("kind") == "diverged":
        return f"diverged{at}: non-finite values (weights in diverged/)"
    where = f"last log line{at}" if ends else "no training step logged yet"
    if (run_dir / ".lock").exists():
        return f"no final record: probably still training (a .lock is held); {where}"
    return f"no final record: stopped before its end (killed?); {where}"


def _final_section(records: list[dict]) -> str:
    finals = [r for r in records if r.get("kind") == "final"]
    scored: dict[str, dict] = {}
    for r in records:
        if r.get("kind") == "eval":
            scored[str(r.get("metric"))] = r  # the latest score of each metric
    parts = []
    if finals:
        rows = [(k, v) for k, v in finals[-1].items() if k != "kind"]
        parts.append(_table(rows, ("final", "value")))
    else:
        trains = [r for r in records if r.get("kind") == "train"]
        if trains:
            rows = [(k, v) for k, v in trains[-1].items() if k != "kind"]
            parts.append("<p>No final record yet; the latest logged values:</p>")
            parts.append(_table(rows, ("latest", "value")))
    if scored:
        rows = []
        for name, r in scored.items():
            skip = ("kind", "metric", "protocol", "step", "kimg", "n")
            values = ", ".join(f"{k} {_fmt(v)}" for k, v in r.items()
                               if k not in skip and not _long_list(v))  # fmt: skip
            protocol = r.get("protocol", {})
            ref = protocol.get("reference", "") if isinstance(protocol, dict) else ""
            rows.append((name, values, r.get("n", ""), r.get("kimg", "after training"), ref))
        parts.append(_table(rows, ("metric", "latest", "samples", "kimg", "reference")))
    return "".join(parts) or "<p class=missing>No metrics yet.</p>"


def _machine(run_dir: Path, records: list[dict]) -> tuple[list[str], list[str]]:
    """The machine lines (from speed.json, then each process's ``speed`` record) and what is
    missing."""
    speeds, missing = [], []
    try:
        speeds.append(json.loads((run_dir / "speed.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        missing.append("No speed.json: the machine is taken from metrics.jsonl, if there.")
    speeds += [r for r in records if r.get("kind") == "speed"]
    lines, seen = [], set()
    for s in speeds:
        if not isinstance(s, dict) or not s.get("machine"):
            continue
        keys = ("precision", "channels_last", "adam", "threads", "accum_steps")
        settings = " ".join(f"train.{k}={_fmt(s[k]).lower()}" for k in keys if k in s)
        line = f"{s['machine']} — {settings}"
        if line not in seen:
            seen.add(line)
            lines.append(line)
    return lines, missing


def _figure(path: Path, max_pixels: int, caption: str, missing: list[str]) -> str:
    """``<figure>`` of a PNG with its caption; an unreadable file goes to ``missing``."""
    try:
        src = _png_uri(path, max_pixels)
    except (OSError, ValueError) as err:  # cut short or not a PNG: say so, show the rest
        missing.append(f"{path.name} could not be read ({err}).")
        return ""
    text = _e(caption)
    return f"<figure><img src='{src}' alt='{text}'><figcaption>{text}</figcaption></figure>"


def _images_section(run_dir: Path, missing: list[str]) -> str:
    """The final samples (toy runs: the scatter and D vs the log ratio), then the grids."""
    toy = (run_dir / "discriminator.png").is_file()
    named = {
        "samples.png": "real vs generated samples (G_ema)" if toy else "final samples of G_ema",
        "discriminator.png": "D(x) next to log P(x)/Q_G(x), Q_G by KDE",
    }
    figures = [
        _figure(run_dir / name, IMAGE_PIXELS, f"{name}: {caption}", missing)
        for name, caption in named.items()
        if (run_dir / name).is_file()
    ]
    strip = []
    for path in pick_grids(run_dir):
        match = re.fullmatch(r"kimg(\d+(?:\.\d+)?)\.png", path.name)
        label = f"{float(match.group(1)):g} kimg" if match else path.name
        strip.append(_figure(path, GRID_PIXELS, label, missing))
    out = ""
    if any(figures):
        out += f"<h2>Samples</h2><div class='row{'' if toy else ' px'}'>{''.join(figures)}</div>"
    if any(strip):
        n = len(list((run_dir / "grids").glob("kimg*.png")))
        out += (
            f"<h2>Sample grids over training</h2><p>G_ema on fixed noise: {len(strip)} of the "
            f"{n} grids in grids/.</p><div class='strip px'>{''.join(strip)}</div>"
        )
    return out


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;
color:#222}h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ddd;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ddd;
padding:2px 8px;text-align:left;vertical-align:top}pre{background:#f6f6f6;padding:.6em;
overflow-x:auto;font-size:.85em}img{max-width:100%}.px img{image-rendering:pixelated}
figure{margin:.3em}figcaption{font-size:.8em;color:#555}.row,.strip{display:flex;
flex-wrap:wrap;gap:.5em}.strip{flex-wrap:nowrap;overflow-x:auto}.strip figure{flex:none}
.missing{color:#a40}"""


def render(run_dir: Path) -> str:
    """The report page of ``run_dir`` as one HTML string."""
    records, bad = read_records(run_dir / "metrics.jsonl")
    missing = []  # what the page lacks, and why, said at its top
    if not records:
        missing.append("No metrics yet: metrics.jsonl is missing or holds no complete line.")
    if bad:
        missing.append(f"{bad} line(s) of metrics.jsonl could not be read (a crash mid-write?).")
    if (run_dir / "metrics.before-restart.jsonl").is_file():
        missing.append("metrics.before-restart.jsonl (a dead attempt's log) is not shown.")
    config_path = run_dir / "config.yaml"
    config = config_path.read_text("utf-8", "replace") if config_path.is_file() else ""
    if not config:
        missing.append("No config.yaml yet: the resolved config is not shown.")
    machines, machine_missing = _machine(run_dir, records)
    missing += machine_missing
    marks = events(records)
    kimg_max = max([k for r in records if (k := _number(r.get("kimg"))) is not None] or [0])
    charts = "".join(
        f"<figure><img src='{_svg_chart(title, lines, marks, kimg_max)}' alt='{_e(title)}'>"
        f"<figcaption>{_e(', '.join(lines))} over kimg</figcaption></figure>"
        for title, lines in curves(records).items()
    )
    images = _images_section(run_dir, missing)
    event_rows = [("" if e.kimg is None else f"{e.kimg:g}", e.kind, e.text) for e in marks]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>minmax report: "
        f"{_e(run_dir.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>minmax run {_e(run_dir.name)}</h1><p><b>{_e(_status(run_dir, records))}</b></p>",
        "".join(f"<p class=missing>{_e(m)}</p>" for m in missing),
        "<h2>Final metrics</h2>" + _final_section(records),
        "<h2>Losses and metrics over training</h2>"
        + (f"<div class=row>{charts}</div>" if charts else "<p class=missing>None logged.</p>"),
        "<h2>Warnings, rollbacks and resumes</h2>"
        + (_table(event_rows, ("kimg", "kind", "what")) if marks else "<p>None.</p>"),
        images,
        "<h2>Machine</h2>" + ("".join(f"<p class=machine>{_e(m)}</p>" for m in machines)
                              or "<p class=missing>Not recorded.</p>"),
        f"<h2>Config</h2><pre>{_e(config) or 'not written yet'}</pre>",
        f"<p style='color:#888;font-size:.8em'>Written by minmax report at {when} from "
        f"{_e(run_dir.resolve())}.</p></body></html>\n",
    ]  # fmt: skip
    return "".join(parts)


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``run_dir``'s report page to ``out`` (default ``RUN/report.html``) atomically.

    A folder that holds neither config.yaml nor metrics.jsonl is not a run: UsageError.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run folder '{run_dir}' does not exist: check the path")
    if not any((run_dir / name).is_file() for name in ("config.yaml", "metrics.jsonl")):
        raise UsageError(f"'{run_dir}' is not a run folder (no config.yaml or metrics.jsonl): "
                         "check the path")  # fmt: skip
    out = Path(out) if out is not None else run_dir / REPORT_FILE
    text = render(run_dir)
    part = out.with_name(out.name + ".part")
    try:
        part.write_text(text, encoding="utf-8")
        os.replace(part, out)
    except OSError as err:
        part.unlink(missing_ok=True)
        raise UsageError(f"cannot write the report to '{out}': {err.strerror or err}") from None
    return out


def write_report_quietly(run_dir: Path) -> Path | None:
    """The end-of-run hook: the report is a convenience, so a failure to write it is a
    warning on stderr and never fails the run it describes."""
    try:
        out = write_report(run_dir)
    except Exception as err:  # noqa: BLE001 - any failure here must not cost the run
        print(f"minmax: warning: no report.html written ({type(err).__name__}: {err})",
              file=sys.stderr)  # fmt: skip
        return None
    print(f"minmax: report: {out}", file=sys.stderr)
    return out
