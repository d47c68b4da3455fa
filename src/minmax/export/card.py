"""The export's README.md: a model card, as the Hugging Face Hub reads one.

YAML front matter (license, library_name, tags, pipeline_tag) for the Hub's search, then for
people: what G maps to what, its samples, how to load it in three lines, the run's own
metrics with their protocol (metric, sample count, reference split, feature network and its
hash), how it was trained, and its license. Every figure comes from the run's logs; the card
never measures anything itself, so it cannot disagree with the run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from minmax.export.onnx import ATOL, RTOL
from minmax.export.runlog import RunLog

NAMED_DATA = ("mnist", "fashion-mnist", "cifar10")


def write_card(
    path: Path,
    config: dict,
    log: RunLog,
    license: str | None,
    samples: tuple[str, int],
    onnx: bool,
) -> None:
    """Write the card; ``samples`` is the figure's file name and sample count (seed 0)."""
    sections = [
        _front_matter(config, license),
        _summary(config, samples),
        _usage(config),
        _onnx(config) if onnx else "",
        _metrics(log, config["network"]),
        _training(config, log),
        _files(onnx, samples[0]),
        _license(license),
    ]
    path.write_text("\n".join(s for s in sections if s))


def _front_matter(config: dict, license: str | None) -> str:
    images = config["output"]["kind"] == "images"
    tags = ["gan", "minmax", config["arch"], "image-generation" if images else "points"]
    if config["n_classes"]:
        tags.append("class-conditional")
    if config["data"].get("name") in NAMED_DATA:
        tags.append(config["data"]["name"])
    lines = ["---", f"license: {license or 'other'}", "library_name: minmax", "tags:"]
    lines += [f"- {tag}" for tag in tags]
    if images and not config["n_classes"]:
        lines.append("pipeline_tag: unconditional-image-generation")
    return "\n".join([*lines, "---", ""])


def _shape(config: dict) -> str:
    return "×".join(str(n) for n in config["output"]["shape"])


def _summary(config: dict, samples: tuple[str, int]) -> str:
    data = config["data"].get("name") or "its data"
    output = config["output"]
    if output["kind"] == "images":
        gives = f"a {_shape(config)} image (C×H×W) with values in [-1, 1]"
    else:
        gives = f"a point in {_shape(config)} dimensions, in the training data's own units"
    takes = f"z ~ N(0, I) of {config['z_dim']} numbers"
    if config["n_classes"]:
        takes += f" and a class y in 0..{config['n_classes'] - 1}"
        if config["class_names"]:
            takes += f" ({', '.join(config['class_names'])})"
    which = "G_ema, the moving average of G's weights" if config["network"] == "G_ema" else "G"
    return (
        f"# {config['arch']} generator trained on {data}\n\n"
        f"A GAN generator ({which}) trained and exported by minmax "
        f"{config['minmax_version']}. It maps {takes} to {gives}.\n\n"
        f"![samples]({samples[0]})\n\n"
        f"{samples[1]} samples (seed 0): `minmax sample . --n {samples[1]} --seed 0 --out "
        f"{samples[0]}` draws them.\n"
    )


def _usage(config: dict) -> str:
    n = 16
    if config["output"]["kind"] == "images":
        what = f"x: ({n}, {', '.join(map(str, config['output']['shape']))}) in [-1, 1]"
    else:
        what = f"x: ({n}, {config['output']['shape'][0]}) points"
    what += "; y: their classes" if config["n_classes"] else ""
    return (
        "## Use it\n\n"
        "```python\n"
        "import minmax  # needs PyTorch only (safetensors, no onnx)\n"
        'G = minmax.load_generator("path/to/this/folder")  # config.json + model.safetensors\n'
        f"x, y = minmax.generate(G, {n}, seed=0)  # {what}\n"
        "```\n\n"
        "Or `minmax sample FOLDER --n 64 --out more.png` (also `--truncation T`"
        + (", `--class K`" if config["n_classes"] else "")
        + "). Weights are safetensors and the config is JSON: loading runs no pickled code.\n"
    )


def _onnx(config: dict) -> str:
    z = config["z_dim"]
    inputs = f"`z` float32 (batch, {z})"
    feed = '{"z": z}'
    if config["n_classes"]:
        inputs += f" and `y` int64 (batch,), class indices in 0..{config['n_classes'] - 1}"
        feed = '{"z": z, "y": np.zeros(16, np.int64)}'
    return (
        "## ONNX\n\n"
        f"`model.onnx` takes {inputs}, and gives `x` float32 (batch, "
        f"{', '.join(map(str, config['output']['shape']))}); the batch size is free. It "
        f"matches PyTorch within {ATOL:g} + {RTOL:g}·|x|, checked with ONNX Runtime when "
        "exported. Truncation is not in the graph: it is a way to draw z (redraw each entry "
        "beyond ±t), so do it when drawing z.\n\n"
        "```python\n"
        "import numpy as np, onnxruntime\n"
        f"z = np.random.default_rng(0).standard_normal((16, {z}), dtype=np.float32)\n"
        f'x = onnxruntime.InferenceSession("model.onnx").run(None, {feed})[0]\n'
        "```\n"
    )


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _number(value: Any) -> str:
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.4g}"
    return str(value)


def _value(record: dict) -> str:
    if "modes_covered" in record:  # stacked MNIST: value is the KL to uniform
        kl = _number(record.get("kl_to_uniform"))
        return f"{record['modes_covered']}/{record.get('n_modes')} modes, KL to uniform {kl}"
    if "value" in record:
        text = _number(record["value"])
        return text + (f" ± {_number(record['std'])}" if "std" in record else "")
    if "precision" in record:
        return f"precision {_number(record['precision'])}, recall {_number(record['recall'])}"
    if "density" in record:
        return f"density {_number(record['density'])}, coverage {_number(record['coverage'])}"
    if "classes_covered" in record:
        return f"{record['classes_covered']}/{record.get('n_classes')} classes"
    return "?"


def _metrics(log: RunLog, network: str) -> str:
    lines = ["## Evaluation", ""]
    records = log.final_metrics()
    final = log.final_summary()
    if network != "G_ema" and (records or "modes_captured" in final):
        lines += ["These figures were measured on the run's G_ema, not on this G.", ""]
    if records:
        lines += [
            "The run's last score of each metric, with its protocol:",
            "",
            "| metric | value | samples | reference | feature network | at kimg |",
            "|---|---|---|---|---|---|",
        ]
        hashes = {}
        for r in records:
            protocol = r.get("protocol") or {}
            extractor = protocol.get("extractor") or {}
            sha = str(extractor.get("weights_sha256", ""))
            hashes[extractor.get("name")] = sha
            net = f"{extractor.get('name')} ({sha[:12]}…)" if sha else extractor.get("name")
            cells = [r["metric"], _value(r), r.get("n"), protocol.get("reference"), net]
            cells.append(_number(r["kimg"]) if "kimg" in r else "after training")
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        lines.append("")
        lines += [f"Feature network `{name}`: SHA-256 `{sha}`." for name, sha in hashes.items()]
        lines.append("")
    if "modes_captured" in final:
        lines.append(
            f"Mode coverage, exact against the known mixture, on {final.get('n_samples')} "
            f"samples: {final['modes_captured']}/{final.get('n_modes')} modes captured, "
            f"high-quality fraction {_number(final.get('hq_fraction'))} (within "
            f"{final.get('n_std')} std of the nearest mode), reverse KL "
            f"{_number(final.get('reverse_kl'))}."
        )
        lines.append("")
    if len(lines) == 2:
        lines += ["The run logged no metrics (`eval.metrics`; `minmax evaluate RUN`).", ""]
    return "\n".join(lines)


def _training(config: dict, log: RunLog) -> str:
    data = config["data"]
    described = f"`{data.get('name')}`"
    if data.get("shape"):
        described += f", shape {'×'.join(map(str, data['shape']))}"
    if data.get("n_classes"):
        described += f", {data['n_classes']} classes"
    if data.get("sha256"):
        described += f" (content SHA-256 `{data['sha256']}`)"
    final = log.final_summary()
    kimg, target = log.state.get("kimg"), log.setting("train.kimg")
    trained = f"{_number(kimg)} kimg (thousands of real samples shown to D)"
    if target is not None:
        trained += f" of the {_number(target)} asked"
    if "seconds" in final:
        trained += f", {_number(final['seconds'])} s"
    if "stopped_by" in final:
        trained += f", stopped by {final['stopped_by']}"
    lines = [
        "## Training",
        "",
        f"- Data: {described}",
        f"- Preset `{log.setting('preset')}`, architecture `{config['arch']}`, objective "
        f"`{log.setting('loss.objective')}`, batch size {log.setting('train.batch_size')}",
        f"- Trained for {trained}",
        f"- Machine: {log.machine or 'not recorded'}",
        f"- Exported from run `{log.name}`, checkpoint `{log.checkpoint}`",
    ]
    if "units" in config:
        lines.append("- Trained on standardised points; G maps back to the data's units (`units`)")
    return "\n".join([*lines, ""])


def _files(onnx: bool, samples: str) -> str:
    lines = [
        "## Files",
        "",
        "- `model.safetensors`: the weights",
        "- `config.json`: the architecture and its arguments (rebuilds G), z size, classes, "
        "output shape and range, the training data's fingerprint, the format version",
        f"- `{samples}`: the samples above",
    ]
    if onnx:
        lines.append("- `model.onnx`: the same G as an ONNX graph")
    return "\n".join([*lines, ""])


def _license(license: str | None) -> str:
    if license:
        return f"## License\n\n`{license}`.\n"
    return (
        "## License\n\n"
        "Not chosen when this folder was exported (`other`): the person sharing it should say "
        "(`minmax export RUN --out DIR --license mit`).\n"
    )
