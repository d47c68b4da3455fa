"""Users' own point clouds (N x d) as training data, and name-or-path dataset resolution.

Files are read with ``allow_pickle=False`` always: a points file is data, and unpickling
runs arbitrary code. Every problem a user can fix is a ``UsageError`` that names the file
and says what to change, because the CLI shows only that one line.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from minmax.data.npz_images import UNREADABLE
from minmax.data.toy import TOY_DENSITIES, Density
from minmax.errors import UsageError
from minmax.registry import did_you_mean

SUFFIXES = (".npy", ".npz", ".csv")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _load_error(path: Path, error: Exception) -> UsageError:
    """Translate numpy's load failures into a message that says what to change."""
    save = "np.savez(path, x=points)" if path.suffix.lower() == ".npz" else "np.save(path, points)"
    if "Object arrays" in str(error):
        return UsageError(
            f"points file '{path}' holds Python objects (dtype=object), which are not loaded "
            f"(that would unpickle code): save a numeric array, e.g. {save}"
        )
    return UsageError(
        f"could not read points file '{path}' ({_one_line(error)}): "
        f"write it with {save} on a float array"
    )


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except UNREADABLE as error:
        raise _load_error(path, error) from None


def _read_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = list(archive.files)
            if len(names) == 1:
                return archive[names[0]]
            if "x" in names:
                return archive["x"]
    except UNREADABLE as error:
        raise _load_error(path, error) from None
    if not names:
        raise UsageError(
            f"points file '{path}' holds no arrays: save the points with np.savez(path, x=points)"
        )
    raise UsageError(
        f"points file '{path}' holds several arrays ({', '.join(sorted(names))}) and none is "
        "named 'x': save the points under the name x, e.g. np.savez(path, x=points)"
    )


def _is_number_row(line: str) -> bool:
    try:
        [float(value) for value in line.split(",")]
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> np.ndarray:
    """Comma-separated numbers, one point per line; the first line may be a header."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"could not read points file '{path}': {_one_line(error)}") from None
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return np.zeros((0, 0))
    skip = first + (0 if _is_number_row(lines[first]) else 1)
    if not any(line.strip() for line in lines[skip:]):
        return np.zeros((0, 0))
    try:
        return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError as error:
        raise UsageError(
            f"points file '{path}' is not a table of numbers ({_one_line(error)}): write one "
            "point per line as comma-separated numbers, with at most one header line"
        ) from None


def _check_array(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype.kind not in "iuf":
        raise UsageError(
            f"points file '{path}' holds an array of dtype {array.dtype}, not real numbers: "
            "save a float array, e.g. points.astype(np.float32)"
        )
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise UsageError(
            f"points file '{path}' holds a {array.ndim}-D array of shape {array.shape}: points "
            "must be N x d (one row per point); flatten each point, e.g. x.reshape(len(x), -1)"
        )
    n_rows, n_cols = array.shape
    if n_rows == 0:
        raise UsageError(f"points file '{path}' holds no points (shape {array.shape}): add rows")
    if n_cols == 0:
        raise UsageError(
            f"points file '{path}' has points with no coordinates (shape {array.shape}): "
            "save an N x d array with d >= 1"
        )
    array = array.astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        found = (("NaN", np.isnan(array).any()), ("Inf", np.isinf(array).any()))
        kinds = [kind for kind, hit in found if hit]
        rows = np.flatnonzero(bad.any(axis=1))
        raise UsageError(
            f"points file '{path}' has {' and '.join(kinds)} values in {len(rows)} of {n_rows} "
            f"rows (first: row {rows[0]}): drop or fix those rows"
        )
    with np.errstate(over="ignore"):  # overflow is what we are looking for
        overflows = np.isinf(array.astype(np.float32)).any()
    if overflows:  # a value that rounds to float32's largest is still fine
        raise UsageError(
            f"points file '{path}' has values beyond float32's range (|x| > 3.4e38): "
            "rescale the points"
        )
    return array


def load_points(path: str | Path) -> Tensor:
    """Read an (N, d) float32 tensor of points from .npy, .npz (array 'x' or the only one) or .csv.

    A 1-D array is read as N points in one dimension (N x 1).
    """
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise UsageError(f"points file '{path}' {what}: check the path")
    suffix = path.suffix.lower()
    readers = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_csv}
    if suffix not in readers:
        raise UsageError(
            f"points file '{path}' has unknown extension '{path.suffix}': save the N x d "
            "points as .npy, .npz or .csv"
        )
    array = _check_array(readers[suffix](path), path)
    return torch.from_numpy(array.astype(np.float32))


class Points:
    """An empirical distribution: uniform over the rows of ``data``, drawn with replacement.

    There is no ``log_prob``: a finite sample has no density, so exact metrics need a Density.
    """

    def __init__(self, data: Tensor) -> None:
        data = torch.as_tensor(data)
        if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
            raise ValueError(f"points must have shape (N, d) with N, d >= 1, got {data.shape}")
        self.data = data.to(torch.float32)
        self.dim = data.shape[1]

    def __len__(self) -> int:
        return self.data.shape[0]

    def __repr__(self) -> str:
        return f"Points(n={len(self)}, dim={self.dim})"

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        if n < 0:
            raise ValueError(f"cannot draw a negative number of samples ({n})")
        index = torch.randint(len(self), (n,), generator=generator)
        return self.data[index]


def _looks_like_path(text: str) -> bool:
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return bool(Path(text).suffix) or any(sep in text for sep in separators)


def resolve_toy(name_or_path: str) -> Density | Points:
    """A registered toy density by name, or the user's points file when given a path."""
    if name_or_path in TOY_DENSITIES:
        return TOY_DENSITIES.get(name_or_path)()
    if _looks_like_path(name_or_path):
        return Points(load_points(name_or_path))
    hint = did_you_mean(name_or_path, TOY_DENSITIES.names())
    raise UsageError(
        f"unknown dataset '{name_or_path}': {hint} (or give a .npy/.npz/.csv file of N×d points)"
    )
