import numpy as np
import pytest
import torch
from PIL import Image

from minmax.images import make_grid, save_animation, save_grid, to_uint8


def test_to_uint8_maps_the_data_scaling_back_and_clamps():
    x = torch.tensor([-1.0, 0.0, 1.0, -3.0, 3.0, 127.5 / 127.5 - 1]).view(1, 1, 1, -1)
    assert to_uint8(x).flatten().tolist() == [0, 128, 255, 0, 255, 128]
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(to_uint8(pixels.float() / 127.5 - 1), pixels)  # exact round trip


@pytest.mark.parametrize("channels", [1, 3])
def test_grid_places_tiles_row_major_with_padding(channels):
    images = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, channels, 3, 4)
    grid = make_grid(images, n_cols=2, pad=1)
    assert grid.shape == (3 * 4 + 1, 2 * 5 + 1, channels)
    assert (grid[1:4, 1:5] == 0).all() and (grid[1:4, 6:10] == 1).all()
    assert (grid[5:8, 1:5] == 2).all() and (grid[9:12, 1:5] == 4).all()
    assert (grid[9:12, 6:10] == 255).all()  # the empty sixth tile stays white


def test_png_and_gif_round_trip(tmp_path):
    images = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    path = save_grid(images, tmp_path / "g.png", n_cols=4)
    assert np.array(Image.open(path)).shape == (9, 4 * 7 + 2, 3)
    frames = [make_grid(images[i : i + 1], 1, pad=0) for i in range(4)]
    gif = save_animation(frames, tmp_path / "walk.gif")
    with Image.open(gif) as im:
        assert im.n_frames == 4 and im.size == (5, 5)
