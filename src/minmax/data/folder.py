"""A folder of images (PNG, JPEG, WebP, BMP; searched recursively), decoded once and cached.

Hidden files and folders (names starting with ".") are skipped. Symbolic links are followed,
each real folder at most once, so a link loop (``a/up -> ..``) cannot recurse forever.

Labels: with ``labels=True``, images in first-level sub-folders are labelled by the sorted
sub-folder names (``cats/``, ``dogs/`` -> classes 0, 1); a folder whose images all lie
directly inside it is unlabelled. Images both directly inside and in sub-folders are an
error (which class would the loose ones be?): move them, or ask for ``labels=False``.

Size: with ``resolution`` > 0 the shorter side is scaled to it (Lanczos) and the center
cropped; an image smaller than that is an error, never silently upscaled. With 0 all
images must share one size. Channels: RGB, or gray when every image is gray (``channels``
0), or as asked (1 or 3; gray uses Pillow's BT.601 luma).

Pixels: 16-bit gray is scaled to 8 bits (x / 257, not clipped); palette and CMYK images are
converted by Pillow; transparent pixels are composited on white (a transparent background is
shown on white pages and viewers), so the hidden colour under alpha 0, which varies between
tools, never reaches the dataset.

Bad files - not an image, empty, truncated, unreadable, a broken link, or more than
``MAX_PIXELS`` pixels (Pillow's decompression-bomb guard, turned from a warning into an
error) - stop the load with an error naming the file, or with ``skip_bad`` are left out,
counted, and reported in one warning (a class whose files are all bad is then no class).
Sizes that do not fit ``resolution`` are not bad files: they stay errors.

Decoding is slow (one Python call per file), so the result is saved as ``images.npy``
(+ ``labels.npy``, ``meta.json``) under ``root/cache/<sha256>/``, the hash covering every
file's relative path, size and mtime and the options: change any and it is decoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from minmax.errors import UsageError

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
WIDE_GRAY_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")  # 16-bit gray PNGs: 0..65535
GRAY_MODES = ("1", "L", "LA", *WIDE_GRAY_MODES)
ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
BACKGROUND = (255, 255, 255)  # what transparent pixels are composited on
# Largest image decoded (8192 x 8192): 192 MiB as RGB before it is resized. A small file that
# claims more is likely a decompression bomb, and a real one is far beyond a GAN's resolution.
MAX_PIXELS = 8192 * 8192
CACHE_VERSION = 2  # bump when the decoded pixels would change for the same files


class BadImageError(Exception):
    """A file that cannot be used as an image; the message is the one-line reason."""

    def __init__(self, reason: str, fix: str = "delete or re-save it") -> None:
        super().__init__(reason)
        self.fix = fix


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _list_images(folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Relative POSIX paths of the images under ``folder``, sorted so the order is stable,
    and the sub-folders that could not be listed, with the reason.

    Hidden files and folders are skipped: macOS's ``._name.jpg`` and editors' checkpoint
    folders are not images of the dataset. Links are followed, but a real folder is entered
    only once (loops, and two links to one folder, would repeat or never end).
    """
    found, unlisted = [], []
    seen = {os.path.realpath(folder)}

    def report(error: OSError) -> None:
        where = Path(error.filename or folder)
        relative = where.relative_to(folder).as_posix() if where != folder else "."
        unlisted.append((relative, _one_line(error)))

    for directory, dirnames, filenames in os.walk(folder, onerror=report, followlinks=True):
        kept = []
        for name in sorted(dirnames):
            real = os.path.realpath(os.path.join(directory, name))
            if not name.startswith(".") and real not in seen:
                seen.add(real)
                kept.append(name)
        dirnames[:] = kept
        base = Path(directory).relative_to(folder)
        for name in filenames:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in SUFFIXES:
                found.append((base / name).as_posix())
    return sorted(found), sorted(unlisted)


def _class_labels(folder: Path, files: list[str]) -> tuple[np.ndarray | None, list[str]]:
    """Labels from first-level sub-folder names, or None when all images are loose."""
    loose = [file for file in files if "/" not in file]
    if len(loose) == len(files):
        return None, []
    if loose:
        raise UsageError(
            f"image folder '{folder}' has {len(loose)} images directly inside (e.g. "
            f"'{loose[0]}') and others in class sub-folders: move them into a sub-folder, "
            "or set data.labels=false"
        )
    classes = [file.split("/", 1)[0] for file in files]
    class_names = sorted(set(classes))
    index = {name: k for k, name in enumerate(class_names)}
    return np.array([index[name] for name in classes], dtype=np.int64), class_names


def _cache_key(folder: Path, files: list[str], **options) -> str:
    entries = []
    for file in files:
        try:
            info = (folder / file).stat()
            entries.append([file, info.st_size, info.st_mtime_ns])
        except OSError:  # a broken link: reported when it is opened
            entries.append([file, None, None])
    blob = json.dumps({"version": CACHE_VERSION, "files": entries, **options}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _open(path: Path, decode: bool) -> Image.Image:
    """The image at ``path``, its header only or decoded; BadImageError for anything unusable."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block Image.open forever
            raise BadImageError("not a regular file")
        if info.st_size == 0:
            raise BadImageError("empty file (0 bytes)")
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that: make it an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise Image.DecompressionBombError(f"{width}x{height} pixels")
                if decode:
                    image.load()
                return image
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImageError(
            f"too large: {_one_line(error)}; at most {MAX_PIXELS} pixels are decoded, a guard "
            "against decompression bombs",
            fix="downscale or delete it",
        ) from None
    except Exception as error:  # Pillow's decoders raise many types on hostile bytes
        raise BadImageError(_one_line(error)) from None


def _probe(path: Path) -> tuple[str, tuple[int, int]]:
    """Mode and (width, height) from the file's header, without decoding the pixels."""
    image = _open(path, decode=False)
    return image.mode, image.size


def _check_sizes(folder: Path, files: list[str], sizes: list[tuple[int, int]], resolution: int):
    """(H, W) of the decoded images; a clear error for sizes that cannot give that."""
    if resolution == 0:
        odd = next((k for k, size in enumerate(sizes) if size != sizes[0]), None)
        if odd is not None:
            (w0, h0), (w1, h1) = sizes[0], sizes[odd]
            raise UsageError(
                f"images in '{folder}' differ in size ('{files[0]}' is {w0}x{h0}, "
                f"'{files[odd]}' {w1}x{h1}): set data.resolution to resize them all"
            )
        width, height = sizes[0]
        return height, width
    small = next((k for k, size in enumerate(sizes) if min(size) < resolution), None)
    if small is not None:
        width, height = sizes[small]
        raise UsageError(
            f"image '{folder / files[small]}' is {width}x{height}, smaller than "
            f"data.resolution={resolution} (images are not upscaled): remove it or lower "
            "data.resolution"
        )
    return resolution, resolution


def _resize_crop(image: Image.Image, resolution: int) -> Image.Image:
    """Shorter side to ``resolution`` (Lanczos), then the centered square."""
    width, height = image.size
    scale = resolution / min(width, height)
    if scale != 1:
        size = (max(resolution, round(width * scale)), max(resolution, round(height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        width, height = size
    left, top = (width - resolution) // 2, (height - resolution) // 2
    return image.crop((left, top, left + resolution, top + resolution))


def _flatten(image: Image.Image, mode: str) -> Image.Image:
    """8-bit ``mode`` ("L" or "RGB"): 16-bit gray scaled, transparency composited on white."""
    if image.mode in WIDE_GRAY_MODES:
        wide = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(wide / 257), 0, 255).astype(np.uint8))
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        background = Image.new("RGBA", image.size, (*BACKGROUND, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert(mode)


def _decode(path: Path, resolution: int, mode: str) -> np.ndarray:
    """uint8 (H, W) for mode "L", (H, W, 3) for "RGB"."""
    image = _flatten(_open(path, decode=True), mode)
    if resolution:
        image = _resize_crop(image, resolution)
    return np.asarray(image)


class _Skips:
    """Bad files: an error naming the first, or (``skip_bad``) a list of (file, reason)."""

    def __init__(self, folder: Path, skip_bad: bool) -> None:
        self.folder, self.skip_bad, self.files = folder, skip_bad, []

    def add(self, file: str, error: BadImageError, doing: str = "could not read image") -> None:
        if not self.skip_bad:
            raise UsageError(
                f"{doing} '{self.folder / file}' ({_one_line(error)}): {error.fix}, or set "
                "data.skip_bad=true to skip such files"
            )
        self.files.append((file, _one_line(error)))


def _decode_all(
    folder: Path, files: list[str], resolution: int, channels: int, skips: _Skips
) -> tuple[np.ndarray, list[str]]:
    """uint8 (N, C, H, W) images of the good files, and those files."""
    probes = {}
    for file in files:
        try:
            probes[file] = _probe(folder / file)
        except BadImageError as error:
            skips.add(file, error)
    files = [file for file in files if file in probes]
    if not files:
        return np.empty((0, 1, 1, 1), np.uint8), files
    all_gray = all(mode in GRAY_MODES for mode, _ in probes.values())
    n_channels = channels or (1 if all_gray else 3)
    mode = "L" if n_channels == 1 else "RGB"
    height, width = _check_sizes(folder, files, [probes[file][1] for file in files], resolution)
    images = np.empty((len(files), n_channels, height, width), np.uint8)
    decoded = np.zeros(len(files), bool)
    bar = tqdm(files, desc=f"decoding {folder.name or folder}", unit="img", disable=None)
    for k, file in enumerate(bar):
        try:
            pixels = _decode(folder / file, resolution, mode)
        except BadImageError as error:
            skips.add(file, error, "could not decode image")
            continue
        if pixels.shape[:2] != (height, width):
            raise UsageError(
                f"image '{folder / file}' decoded to {pixels.shape[1]}x{pixels.shape[0]}, "
                f"not {width}x{height} as its header said: re-save it"
            )
        images[k] = pixels[None] if n_channels == 1 else pixels.transpose(2, 0, 1)
        decoded[k] = True
    if not decoded.all():
        images = images[decoded]
    return images, [file for file, ok in zip(files, decoded, strict=True) if ok]


def _save_atomic(path: Path, write) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        write(file)
    os.replace(temporary, path)


def _write_cache(cache: Path, loaded: tuple) -> None:
    """images.npy, labels.npy, then meta.json last: meta.json marks a complete entry."""
    images, labels, class_names, skipped = loaded
    meta = {
        "shape": list(images.shape),
        "class_names": class_names,
        "labels": labels is not None,
        "skipped": skipped,
    }
    try:
        cache.mkdir(parents=True, exist_ok=True)
        _save_atomic(cache / "images.npy", lambda file: np.save(file, images))
        if labels is not None:
            _save_atomic(cache / "labels.npy", lambda file: np.save(file, labels))
        _save_atomic(cache / "meta.json", lambda file: file.write(json.dumps(meta).encode()))
    except OSError as error:
        warnings.warn(
            f"could not cache decoded images in '{cache}' ({_one_line(error)}); "
            "they will be decoded again next time",
            stacklevel=3,
        )


def _read_cache(cache: Path) -> tuple | None:
    """A complete cache entry, or None (missing or damaged: decode again)."""
    try:
        meta = json.loads((cache / "meta.json").read_text())
        images = np.load(cache / "images.npy", allow_pickle=False)
        labels = np.load(cache / "labels.npy", allow_pickle=False) if meta["labels"] else None
        skipped = [(str(file), str(reason)) for file, reason in meta["skipped"]]
        if list(images.shape) != meta["shape"] or images.dtype != np.uint8:
            return None
        return images, labels, list(meta["class_names"]), skipped
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _warn_skipped(folder: Path, n_files: int, skipped: list[tuple[str, str]]) -> None:
    examples = "; ".join(f"'{file}' ({reason})" for file, reason in skipped[:3])
    more = f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""
    warnings.warn(
        f"skipped {len(skipped)} of {n_files} entries in image folder '{folder}' that could "
        f"not be read (data.skip_bad=true): {examples}{more}",
        stacklevel=4,
    )


def load_folder(
    folder: Path,
    root: Path,
    resolution: int,
    channels: int,
    labels: bool,
    skip_bad: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, list[str], list[tuple[str, str]]]:
    """uint8 (N, C, H, W) images, int64 labels or None, the class (sub-folder) names, and the
    skipped files and sub-folders with the reason (empty unless ``skip_bad``)."""
    files, unlisted = _list_images(folder)
    skips = _Skips(folder, skip_bad)
    for where, reason in unlisted:
        error = BadImageError(f"unreadable folder: {reason}", "make it readable")
        skips.add(where, error, "could not list")
    if not files:
        raise UsageError(
            f"no images found in '{folder}' (looked for {', '.join(SUFFIXES)} files, "
            "recursively): check the path"
        )
    if labels and not skip_bad:  # a layout error now, before decoding (skipping may fix it)
        _class_labels(folder, files)
    options = dict(resolution=resolution, channels=channels, labels=labels, skip_bad=skip_bad)
    cache = root / "cache" / _cache_key(folder, files, max_pixels=MAX_PIXELS, **options)
    loaded = _read_cache(cache)
    if loaded is None:
        images, good = _decode_all(folder, files, resolution, channels, skips)
        if not good:
            file, reason = skips.files[0]
            raise UsageError(
                f"none of the {len(files)} image files in '{folder}' could be read (e.g. "
                f"'{file}': {reason}): check that they are images"
            )
        label_array, class_names = _class_labels(folder, good) if labels else (None, [])
        loaded = (images, label_array, class_names, skips.files)
        _write_cache(cache, loaded)
    if loaded[3]:
        _warn_skipped(folder, len(files) + len(unlisted), loaded[3])
    return loaded
