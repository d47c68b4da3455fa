import numpy as np
import pytest
import torch

from minmax.config import DataConfig
from minmax.data.sources import ImageSource, ToySource, resolve_data
from minmax.errors import UsageError


def test_toy_and_image_sources_share_one_interface(tmp_path):
    toy = resolve_data(DataConfig(name="ring"))
    assert isinstance(toy, ToySource) and toy.shape == (2,) and toy.n_classes == 0
    x, y = toy.sample(5, torch.Generator().manual_seed(0))
    assert x.shape == (5, 2) and y is None and toy.sample_labels(5, torch.Generator()) is None

    labels = np.array([0] * 90 + [1] * 10)
    np.savez(tmp_path / "d.npz", x=np.zeros((100, 8, 8), np.uint8), y=labels)
    images = resolve_data(DataConfig(name=str(tmp_path / "d.npz")))
    assert isinstance(images, ImageSource) and images.shape == (1, 8, 8)
    x, y = images.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 1, 8, 8) and x.min() == -1 and y.dtype == torch.int64
    # A conditional G is asked for classes as often as the data hold them.
    drawn = images.sample_labels(20000, torch.Generator().manual_seed(0))
    assert abs(drawn.float().mean().item() - 0.1) < 0.01


def test_a_missing_folder_is_named():
    with pytest.raises(UsageError, match="data folder 'no/such/dir' does not exist"):
        resolve_data(DataConfig(name="no/such/dir"))
