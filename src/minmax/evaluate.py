"""``minmax evaluate``: score generated images against a reference, protocol beside each number.

Metric names carry their sample count (``fid10k`` = Fréchet distance on 10,000 generated
images). FID uses every reference image; KID, precision/recall and density/coverage pair the
generated set with a seeded random subset of the reference of the same size. Scores made with
the dataset-specific digits network are labelled with it (``fd10k_digits``), never "FID".
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from minmax.errors import UsageError
from minmax.metrics.census import class_census
from minmax.metrics.features import FeatureExtractor
from minmax.metrics.frechet import feature_stats, frechet_distance
from minmax.metrics.inception_score import inception_score
from minmax.metrics.kid import kid
from minmax.metrics.manifold import density_coverage, precision_recall
from minmax.metrics.refstats import (
    is_cached_stats,
    load_cached,
    reference_key,
    reference_stats,
)
from minmax.metrics.stacked_modes import (
    channel_digits,
    check_digit_classifier,
    check_stacked_images,
    stacked_modes,
)
from minmax.registry import did_you_mean

METRICS = ["fid", "kid", "is", "pr", "dc", "census", "modes", "mem"]
_NAME = re.compile(r"^([a-z]+?)(\d+(?:\.\d+)?)k$")


@dataclass(frozen=True)
class MetricSpec:
    kind: str  # one of METRICS
    n: int  # generated images it uses

    @property
    def name(self) -> str:
        return f"{self.kind}{_count(self.n)}"


def _count(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else f"{n / 1000:g}k"


def parse_metrics(text: str, n: int | None = None) -> list[MetricSpec]:
    """``"fid10k,kid10k"`` -> specs; ``n`` overrides every count."""
    specs = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        match = _NAME.match(item)
        if not match or match.group(1) not in METRICS:
            kind = match.group(1) if match else item
            hint = did_you_mean(kind, METRICS)
            raise UsageError(
                f"unknown metric '{item}': write a name and a count like fid10k ({hint})"
            )
        count = n if n is not None else round(float(match.group(2)) * 1000)
        if count < 2:
            raise UsageError(f"metric '{item}' needs at least 2 samples, got {count}")
        specs.append(MetricSpec(match.group(1), count))
    if not specs:
        raise UsageError("--metrics is empty: give e.g. fid10k,kid10k")
    return specs


def label(spec: MetricSpec, extractor: FeatureExtractor) -> str:
    """The name a score is shown under: FID only with Inception, else ``fd..._<net>``."""
    if extractor.name.startswith("inception"):
        return spec.name
    kind = "fd" if spec.kind == "fid" else spec.kind
    return f"{kind}{_count(spec.n)}_{extractor.name}"


def load_extractor(features: str, inception_weights: str | None = None) -> FeatureExtractor:
    """``inception`` (the TF FID reference network), ``digits`` (the cached digits net), or a
    path to a digits net written by ``minmax features train``."""
    if features == "inception":
        from minmax.metrics.features.inception import load_inception

        return load_inception(inception_weights)
    from minmax.metrics.features.digits import default_digits_path, load_digits

    path = default_digits_path() if features == "digits" else Path(features)
    if not path.is_file():
        raise UsageError(
            f"feature net '{path}' not found: train one with "
            f"'minmax features train --data mnist --out {path}', or use --features inception"
        )
    return load_digits(path)


@dataclass
class ImageSet:
    pixels: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor | None
    description: str


def load_generated(source: str, n: int, seed: int, root: str | None) -> ImageSet:
    """n images from a run folder (its G_ema), an .npz of images, an image folder or a dataset
    (its train split: e.g. the MNIST training set scored against its test set)."""
    path = Path(source)
    if path.is_dir() and ((path / "checkpoint").is_dir() or (path / "state.json").is_file()):
        from minmax.images import to_uint8
        from minmax.sample import generate, load_generator

        G = load_generator(path)
        x, y = generate(G, n, seed)
        if x.ndim != 4:
            raise UsageError(f"run '{path}' makes points, not images: evaluate scores images")
        return ImageSet(to_uint8(x), y, f"{path} (G_ema, seed {seed})")
    images = _load_dataset(source, root, "train")
    if len(images.pixels) < n:
        raise UsageError(
            f"'{source}' holds {len(images.pixels)} images, fewer than the {n} the metrics ask "
            "for: lower the count (e.g. fid1k) or use --n"
        )
    return ImageSet(images.pixels[:n], None if images.labels is None else images.labels[:n],
                    images.description)  # fmt: skip


def _load_dataset(name: str, root: str | None, split: str) -> ImageSet:
    from minmax.data.images import is_image_dataset, load_images

    if not is_image_dataset(name):
        raise UsageError(
            f"'{name}' is not a run folder, an image folder, an .npz of images or a dataset "
            "name (mnist, fashion-mnist, cifar10)"
        )
    data = load_images(name, root=root, split=split, labels=True)
    return ImageSet(data.images, data.labels, f"{name} ({split})")


def _subset(features: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(features) <= n:
        return features
    index = np.random.default_rng(seed).choice(len(features), n, replace=False)
    return features[np.sort(index)]


def evaluate(
    generated: str,
    reference: str,
    metrics: str = "fid10k",
    features: str = "inception",
    n: int | None = None,
    seed: int = 0,
    root: str | None = None,
    split: str = "train",
    inception_weights: str | None = None,
) -> list[dict]:
    """Score ``generated`` against ``reference``; one record per metric, protocol included."""
    specs = parse_metrics(metrics, n)
    extractor = load_extractor(features, inception_weights)
    check_specs(specs, extractor)
    start = time.monotonic()
    fake = load_generated(generated, max(spec.n for spec in specs), seed, root)
    records = score_images(fake, reference, specs, extractor, seed, root, split)
    seconds = round(time.monotonic() - start, 2)
    for record in records:
        record["seconds_total"] = seconds
    return records


def score_images(
    fake: ImageSet,
    reference: str,
    specs: list[MetricSpec],
    extractor: FeatureExtractor,
    seed: int = 0,
    root: str | None = None,
    split: str = "train",
) -> list[dict]:
    """Score uint8 images against ``reference`` (statistics cached); a record per metric."""
    if any(spec.kind == "modes" for spec in specs):  # scored apart: no reference images
        return _with_stacked_modes(fake, reference, specs, extractor, seed, root, split)
    fake_features, fake_probs = extractor.run(fake.pixels)
    if is_cached_stats(reference):  # statistics only: no images, no labels
        ref_stats = load_cached(reference, extractor)
        ref = ImageSet(torch.zeros(0, dtype=torch.uint8), None, reference)
        k = ref_stats.key
        described = f"{reference} (cached: {k.get('dataset')} {k.get('split')}, {k.get('count')})"
    else:
        ref = _load_dataset(reference, root, split)
        key = reference_key(reference, split, extractor, len(ref.pixels))
        ref_stats = reference_stats(key, lambda: extractor.run(ref.pixels)[0])
        described = f"{reference} ({split}), {len(ref.pixels)} images"
    protocol = {
        "extractor": extractor.describe(),
        "generated": fake.description,
        "reference": described,
        "seed": seed,
    }
    records = []
    for spec in specs:
        f, p = fake_features[: spec.n], fake_probs[: spec.n]
        ref_sub = _subset(ref_stats.features, spec.n, seed)
        if spec.kind == "mem":
            value = _memorisation(spec, f, reference, root, extractor, seed)
        else:
            value = _score(spec, f, p, ref_stats, ref_sub, ref, extractor)
        records.append({"kind": "eval", "metric": label(spec, extractor), "n": spec.n,
                        **value, "protocol": protocol})  # fmt: skip
    return records


def check_specs(
    specs: list[MetricSpec], extractor: FeatureExtractor, shape: tuple[int, ...] | None = None
) -> None:
    """Refuse, before any image is made, metrics the feature net (or images of ``shape``,
    (C, H, W), when given) cannot score."""
    if any(spec.kind == "modes" for spec in specs):
        check_digit_classifier(extractor)
        if shape is not None:
            check_stacked_images(torch.zeros((1, *shape), dtype=torch.uint8))


def _with_stacked_modes(fake: ImageSet, reference, specs, extractor, seed, root, split):
    """Stacked-MNIST mode records (minmax.metrics.stacked_modes: against the uniform over
    1,000 modes, ``reference`` unread) in their place among the other metrics' records."""
    others = [spec for spec in specs if spec.kind != "modes"]
    scored = iter(score_images(fake, reference, others, extractor, seed, root, split)
                  if others else [])  # fmt: skip
    protocol = {
        "extractor": extractor.describe(),
        "generated": fake.description,
        "reference": "uniform over the 1,000 digit triples (no reference images)",
        "seed": seed,
    }
    n = max(spec.n for spec in specs if spec.kind == "modes")
    if len(fake.pixels) < n:
        raise UsageError(f"the mode metric needs {n} images, got {len(fake.pixels)}")
    digits = channel_digits(fake.pixels[:n], extractor)  # classified once, sliced per spec
    records = []
    for spec in specs:
        if spec.kind != "modes":
            records.append(next(scored))
            continue
        report = stacked_modes(digits[: spec.n])
        records.append({"kind": "eval", "metric": label(spec, extractor), "n": spec.n,
                        "value": report["kl_to_uniform"], **report,
                        "protocol": protocol})  # fmt: skip
    return records


def _memorisation(spec, f, reference: str, root, extractor, seed: int) -> dict:
    """mem: the generated images' distances to the reference's train split against those of
    a seeded ``spec.n`` of its test split (see ``minmax.metrics.memorisation``)."""
    from minmax.metrics.memorisation import memorisation

    if is_cached_stats(reference):
        raise UsageError(f"{spec.name} needs the reference's images (its train and test "
                         f"splits), not cached statistics '{reference}'")  # fmt: skip
    features = {}
    for split in ("train", "test"):
        try:
            images = _load_dataset(reference, root, split).pixels
        except UsageError as err:
            raise UsageError(f"{spec.name} needs the train and test splits of '{reference}' "
                             f"(one trained on, one held out): {err}") from None  # fmt: skip
        key = reference_key(reference, split, extractor, len(images))
        features[split] = reference_stats(key, lambda x=images: extractor.run(x)[0]).features
    if len(features["test"]) < spec.n:
        raise UsageError(f"{spec.name} needs {spec.n} held-out images; '{reference}' (test) "
                         f"holds {len(features['test'])}: lower the count")  # fmt: skip
    result = memorisation(features["train"], _subset(features["test"], spec.n, seed), f)
    train, test = len(features["train"]), len(features["test"])
    return {**result.as_dict(), "training": f"{reference} (train), {train} images",
            "held_out": f"{reference} (test), {spec.n} of {test} images"}  # fmt: skip


def _score(spec, f, p, ref_stats, ref_sub, ref: ImageSet, extractor) -> dict:
    if spec.kind == "fid":
        return {"value": frechet_distance(*feature_stats(f), ref_stats.mu, ref_stats.sigma)}
    if spec.kind == "kid":
        mean, std = kid(ref_sub, f, seed=0)
        return {"value": mean, "std": std}
    if spec.kind in ("is", "census") and not extractor.num_classes:
        raise UsageError(f"{spec.name} needs a classifier; '{extractor.name}' is not one")
    if spec.kind == "is":
        mean, std = inception_score(p)
        return {"value": mean, "std": std}
    if spec.kind == "pr":
        precision, recall = precision_recall(ref_sub, f, k=3)
        return {"precision": precision, "recall": recall}
    if spec.kind == "dc":
        density, coverage = density_coverage(ref_sub, f, k=5)
        return {"density": density, "coverage": coverage}
    if ref.labels is None:
        raise UsageError(f"{spec.name} needs a labelled reference (its class frequencies)")
    freq = np.bincount(ref.labels.numpy(), minlength=extractor.num_classes).astype(np.float64)
    return class_census(p, freq)


def format_table(records: list[dict]) -> str:
    """One line per metric: its value(s), then the protocol once."""
    lines = []
    for r in records:
        if "ratio" in r:
            text = (f"ratio {r['ratio']:.4f}  Z_U {r['z_u']:.1f}  close "
                    f"{100 * r['close_share']:.1f}%: {r['verdict']}")  # fmt: skip
        elif "modes_covered" in r:  # counts: in the JSON record only (1,000 of them)
            text = (f"{r['modes_covered']}/{r['n_modes']} modes, "
                    f"KL to uniform {r['kl_to_uniform']:.4f} nats")  # fmt: skip
            if "channel_kl" in r:
                text += " (channels' digit shares: " + ", ".join(
                    f"{kl:.4f}" for kl in r["channel_kl"]) + ")"  # fmt: skip
        elif "value" in r:
            text = f"{r['value']:.4f}" + (f" ± {r['std']:.4f}" if "std" in r else "")
        elif "precision" in r:
            text = f"precision {r['precision']:.4f}  recall {r['recall']:.4f}"
        elif "density" in r:
            text = f"density {r['density']:.4f}  coverage {r['coverage']:.4f}"
        else:
            text = (f"{r['classes_covered']}/{r['n_classes']} classes, "
                    f"KL to data {r['kl_to_data']:.4f}, counts {r['counts']}")  # fmt: skip
        lines.append(f"{r['metric']:<18}{text}")
    if records:
        p = records[0]["protocol"]
        e = p["extractor"]
        lines.append(f"generated: {p['generated']}; reference: {p['reference']}; seed {p['seed']}")
        lines.append(f"extractor: {e['name']} sha256 {e['weights_sha256'][:12]}…, "
                     f"input {e['input_size']}, resize: {e['resize']}")  # fmt: skip
    return "\n".join(lines)
