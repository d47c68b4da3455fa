"""Users' point files: every format round-trips, every bad file is a one-line UsageError."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from minmax.data.points import Points, load_points, resolve_toy
from minmax.data.toy import GaussianMixture
from minmax.errors import UsageError

POINTS = np.array([[0.5, -1.0], [2.0, 3.25], [-4.0, 0.0]], dtype=np.float32)


def write_csv(path, array, header=None):
    np.savetxt(path, array, delimiter=",", fmt="%.9g", header=header or "", comments="")
    return path


def load_error(path) -> str:
    with pytest.raises(UsageError) as info:
        load_points(path)
    message = str(info.value)
    assert "\n" not in message, "the CLI prints one line"
    assert str(path) in message, "the message must name the file"
    return message


def test_npy_round_trip(tmp_path):
    np.save(tmp_path / "p.npy", POINTS)
    x = load_points(tmp_path / "p.npy")
    assert x.dtype == torch.float32
    assert np.array_equal(x.numpy(), POINTS)


def test_npy_1d_is_n_by_1(tmp_path):
    np.save(tmp_path / "p.npy", np.arange(4, dtype=np.int64))
    x = load_points(str(tmp_path / "p.npy"))
    assert x.shape == (4, 1) and x.dtype == torch.float32
    assert x[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_npz_single_array_any_name(tmp_path):
    np.savez(tmp_path / "p.npz", points=POINTS)
    assert np.array_equal(load_points(tmp_path / "p.npz").numpy(), POINTS)


def test_npz_picks_x_among_several(tmp_path):
    np.savez(tmp_path / "p.npz", labels=np.arange(3), x=POINTS)
    assert np.array_equal(load_points(tmp_path / "p.npz").numpy(), POINTS)


def test_npz_several_without_x(tmp_path):
    np.savez(tmp_path / "p.npz", a=POINTS, b=POINTS)
    message = load_error(tmp_path / "p.npz")
    assert "a, b" in message and "x=points" in message


def test_csv_round_trip_without_and_with_header(tmp_path):
    plain = load_points(write_csv(tmp_path / "plain.csv", POINTS))
    headed = load_points(write_csv(tmp_path / "headed.csv", POINTS, header="x,y"))
    assert np.array_equal(plain.numpy(), POINTS)
    assert np.array_equal(headed.numpy(), POINTS)


def test_csv_single_column(tmp_path):
    (tmp_path / "p.csv").write_text("value\n1.5\n-2\n")
    assert load_points(tmp_path / "p.csv").tolist() == [[1.5], [-2.0]]


def test_csv_with_text_in_a_data_row(tmp_path):
    (tmp_path / "p.csv").write_text("x,y\n1,2\n3,oops\n")
    assert "comma-separated numbers" in load_error(tmp_path / "p.csv")


def test_csv_with_only_a_header(tmp_path):
    (tmp_path / "p.csv").write_text("x,y\n")
    assert "no points" in load_error(tmp_path / "p.csv")


def test_nan_rows_are_counted(tmp_path):
    bad = np.ones((5, 2))
    bad[1, 0] = bad[3, 1] = bad[3, 0] = np.nan
    np.save(tmp_path / "p.npy", bad)
    message = load_error(tmp_path / "p.npy")
    assert "NaN" in message and "2 of 5 rows" in message and "row 1" in message


def test_inf_is_rejected(tmp_path):
    bad = np.ones((4, 3))
    bad[2, 2] = -np.inf
    write_csv(tmp_path / "p.csv", bad)
    message = load_error(tmp_path / "p.csv")
    assert "Inf" in message and "NaN" not in message and "1 of 4 rows" in message


def test_values_beyond_float32_are_rejected(tmp_path):
    np.save(tmp_path / "p.npy", np.array([[1e300, 0.0]]))
    assert "float32" in load_error(tmp_path / "p.npy")


def test_3d_array_is_rejected(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((2, 3, 4)))
    message = load_error(tmp_path / "p.npy")
    assert "3-D" in message and "reshape" in message


def test_zero_rows_and_zero_columns(tmp_path):
    np.save(tmp_path / "rows.npy", np.zeros((0, 2)))
    np.save(tmp_path / "cols.npy", np.zeros((5, 0)))
    assert "no points" in load_error(tmp_path / "rows.npy")
    assert "no coordinates" in load_error(tmp_path / "cols.npy")


def test_missing_file(tmp_path):
    assert "does not exist" in load_error(tmp_path / "nope.npy")


def test_unknown_extension(tmp_path):
    (tmp_path / "p.txt").write_text("1,2\n")
    message = load_error(tmp_path / "p.txt")
    assert "'.txt'" in message and ".npy" in message and ".csv" in message


def test_object_array_is_refused_without_unpickling(tmp_path):
    np.save(tmp_path / "p.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert "dtype=object" in load_error(tmp_path / "p.npy")


def test_string_array_is_rejected(tmp_path):
    np.save(tmp_path / "p.npy", np.array([["a", "b"]]))
    assert "not real numbers" in load_error(tmp_path / "p.npy")


@pytest.mark.parametrize("name", ["p.npy", "p.npz"])
def test_corrupt_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"not an array")
    assert "could not read" in load_error(tmp_path / name)


def test_object_array_in_npz(tmp_path):
    np.savez(tmp_path / "p.npz", x=np.array([None, 1], dtype=object))
    assert "dtype=object" in load_error(tmp_path / "p.npz")


finite_float32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
point_arrays = arrays(
    np.float32, array_shapes(min_dims=2, max_dims=2, max_side=6), elements=finite_float32
)


@settings(max_examples=40, deadline=None)
@given(array=point_arrays)
def test_round_trip_property(tmp_path_factory, array):
    folder = tmp_path_factory.getbasetemp()
    np.save(folder / "prop.npy", array)
    write_csv(folder / "prop.csv", array)
    for name in ("prop.npy", "prop.csv"):
        loaded = load_points(folder / name)
        assert loaded.shape == array.shape
        assert np.array_equal(loaded.numpy(), array)


def test_points_sample_rows_with_replacement():
    points = Points(torch.from_numpy(POINTS))
    assert points.dim == 2 and len(points) == 3
    a = points.sample(100, torch.Generator().manual_seed(0))
    b = points.sample(100, torch.Generator().manual_seed(0))
    assert a.shape == (100, 2) and torch.equal(a, b)
    rows = {tuple(row) for row in POINTS.tolist()}
    drawn = {tuple(row) for row in a.tolist()}
    assert drawn == rows, "100 draws from 3 rows hit every row and nothing else"


def test_points_reject_bad_shapes():
    with pytest.raises(ValueError):
        Points(torch.zeros(0, 2))
    with pytest.raises(ValueError):
        Points(torch.zeros(3))


def test_resolve_toy_name_path_and_typo(tmp_path):
    assert isinstance(resolve_toy("ring"), GaussianMixture)
    np.save(tmp_path / "p.npy", POINTS)
    points = resolve_toy(str(tmp_path / "p.npy"))
    assert isinstance(points, Points) and np.array_equal(points.data.numpy(), POINTS)
    with pytest.raises(UsageError) as info:
        resolve_toy("rign")
    assert "unknown dataset 'rign': did you mean 'ring'?" in str(info.value)
    assert ".npy/.npz/.csv" in str(info.value)


def test_resolve_toy_treats_paths_as_files():
    with pytest.raises(UsageError, match="does not exist"):
        resolve_toy("missing.npy")
    with pytest.raises(UsageError, match="does not exist"):
        resolve_toy("some/dir/points")


def test_a_damaged_compressed_points_file_is_a_usage_error(tmp_path):
    import zipfile

    import numpy as np

    from minmax.data.points import load_points
    from minmax.errors import UsageError

    path = tmp_path / "p.npz"
    np.savez_compressed(path, x=np.random.default_rng(0).normal(size=(500, 2)))
    with zipfile.ZipFile(path) as z:
        info = z.infolist()[0]
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 10 : start + 40] = b"\x00" * 30  # corrupt the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(UsageError, match="p.npz"):
        load_points(path)
