"""A folder of images (PNG, JPEG, WebP, BMP; searched recursively), decoded once and cached.

Hidden files and folders (names starting with ".") are skipped.

Labels: with ``labels=True``, images in first-level sub-folders are labelled by the sorted
sub-folder names (``cats/``, ``dogs/`` -> classes 0, 1); a folder whose images all lie
directly inside it is unlabelled. Images both directly inside and in sub-folders are an
error (which class would the loose ones be?): move them, or ask for ``labels=False``.

Size: with ``resolution`` > 0 the shorter side is scaled to it (Lanczos) and the center
cropped; an image smaller than that is an error, never silently upscaled. With 0 all
images must share one size. Channels: RGB, or gray when every image is gray (``channels``
0), or as asked (1 or 3; gray uses Pillow's BT.601 luma).

Decoding is slow (one Python call per file), so the result is saved as ``images.npy``
(+ ``labels.npy``, ``meta.json``) under ``root/cache/<sha256>/``, the hash covering every
file's relative path, size and mtime and the options: change any and it is decoded again.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from minmax.errors import UsageError

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
GRAY_MODES = ("1", "L", "LA")
CACHE_VERSION = 1  # bump when the decoded pixels would change for the same files


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _list_images(folder: Path) -> list[str]:
    """Relative POSIX paths of the images under ``folder``, sorted so the order is stable.

    Hidden files and folders are skipped: macOS's ``._name.jpg`` and editors' checkpoint
    folders are not images of the dataset.
    """
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        hidden = any(part.startswith(".") for part in relative.parts)
        if not hidden and path.suffix.lower() in SUFFIXES and path.is_file():
            found.append(relative.as_posix())
    return sorted(found)


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


def _cache_key(folder: Path, files: list[str], resolution: int, channels: int, labels: bool) -> str:
    entries = []
    for file in files:
        stat = (folder / file).stat()
        entries.append([file, stat.st_size, stat.st_mtime_ns])
    options = {"resolution": resolution, "channels": channels, "labels": labels}
    blob = json.dumps({"version": CACHE_VERSION, "files": entries, **options})
    return hashlib.sha256(blob.encode()).hexdigest()


def _probe(path: Path) -> tuple[str, tuple[int, int]]:
    """Mode and (width, height) from the file's header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UsageError(
            f"could not read image '{path}' ({_one_line(error)}): delete or re-save it"
        ) from None


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


def _decode(path: Path, resolution: int, mode: str) -> np.ndarray:
    """uint8 (H, W) for mode "L", (H, W, 3) for "RGB"."""
    try:
        with Image.open(path) as image:
            image = image.convert(mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UsageError(
            f"could not decode image '{path}' ({_one_line(error)}): delete or re-save it"
        ) from None
    if resolution:
        image = _resize_crop(image, resolution)
    return np.asarray(image)


def _decode_all(folder: Path, files: list[str], resolution: int, channels: int) -> np.ndarray:
    probes = [_probe(folder / file) for file in files]
    all_gray = all(mode in GRAY_MODES for mode, _ in probes)
    n_channels = channels or (1 if all_gray else 3)
    mode = "L" if n_channels == 1 else "RGB"
    height, width = _check_sizes(folder, files, [size for _, size in probes], resolution)
    images = np.empty((len(files), n_channels, height, width), np.uint8)
    bar = tqdm(files, desc=f"decoding {folder.name or folder}", unit="img", disable=None)
    for k, file in enumerate(bar):
        pixels = _decode(folder / file, resolution, mode)
        if pixels.shape[:2] != (height, width):
            raise UsageError(
                f"image '{folder / file}' decoded to {pixels.shape[1]}x{pixels.shape[0]}, "
                f"not {width}x{height} as its header said: re-save it"
            )
        images[k] = pixels[None] if n_channels == 1 else pixels.transpose(2, 0, 1)
    return images


def _save_atomic(path: Path, write) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as file:
        write(file)
    os.replace(temporary, path)


def _write_cache(
    cache: Path, images: np.ndarray, labels: np.ndarray | None, class_names: list[str]
) -> None:
    """images.npy, labels.npy, then meta.json last: meta.json marks a complete entry."""
    meta = {"shape": list(images.shape), "class_names": class_names, "labels": labels is not None}
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


def _read_cache(cache: Path) -> tuple[np.ndarray, np.ndarray | None, list[str]] | None:
    """A complete cache entry, or None (missing or damaged: decode again)."""
    try:
        meta = json.loads((cache / "meta.json").read_text())
        images = np.load(cache / "images.npy", allow_pickle=False)
        labels = np.load(cache / "labels.npy", allow_pickle=False) if meta["labels"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if list(images.shape) != meta["shape"] or images.dtype != np.uint8:
        return None
    return images, labels, list(meta["class_names"])


def load_folder(
    folder: Path, root: Path, resolution: int, channels: int, labels: bool
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """uint8 (N, C, H, W) images, int64 labels or None, and the class (sub-folder) names."""
    files = _list_images(folder)
    if not files:
        raise UsageError(
            f"no images found in '{folder}' (looked for {', '.join(SUFFIXES)} files, "
            "recursively): check the path"
        )
    label_array, class_names = _class_labels(folder, files) if labels else (None, [])
    cache = root / "cache" / _cache_key(folder, files, resolution, channels, labels)
    cached = _read_cache(cache)
    if cached is not None:
        return cached
    images = _decode_all(folder, files, resolution, channels)
    _write_cache(cache, images, label_array, class_names)
    return images, label_array, class_names
