"""FID Inception-v3: architecture against the published weights file, hash checks, input rule.

No test downloads anything or needs the real weights: the architecture is checked against
what the file is known to hold (566 entries, 95,628,359 bytes), loading against a stand-in
file whose hash the test pins.
"""

from __future__ import annotations

import copy
import hashlib
import io
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minmax.errors import UsageError
from minmax.metrics.features import (
    as_uint8_images,
    match_channels,
    resize_tf1_bilinear,
    resize_torch_bilinear,
)
from minmax.metrics.features import inception as inception_module
from minmax.metrics.features.inception import (
    N_STATE_ENTRIES,
    WEIGHTS_BYTES,
    WEIGHTS_SHA256,
    FIDInceptionV3,
    InceptionExtractor,
    default_weights_path,
    load_inception_net,
)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return FIDInceptionV3().eval()


# (key, shape) pairs of the pytorch-fid file, one per block type and the ends.
EXPECTED_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_4a_3x3.bn.running_var": (192,),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


def test_state_dict_matches_the_published_file(net):
    state = net.state_dict()
    assert len(state) == N_STATE_ENTRIES == 94 * 6 + 2
    for key, shape in EXPECTED_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    assert not [k for k in state if "Aux" in k]
    # The file is the tensors plus zip/pickle overhead (~86 kB over 566 entries).
    tensor_bytes = sum(v.numel() * v.element_size() for v in state.values())
    assert 0.998 * WEIGHTS_BYTES < tensor_bytes < WEIGHTS_BYTES
    assert all(m.eps == 1e-3 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_output_shapes(net):
    with torch.no_grad():
        pool3, logits = net(torch.randn(2, 3, 299, 299))
    assert pool3.shape == (2, 2048) and logits.shape == (2, 1008)
    assert (pool3 >= 0).all()  # average of ReLU outputs
    # Inception Score logits leave out the fc bias, as the reference IS code does.
    assert torch.allclose(logits, pool3 @ net.fc.weight.T)
    assert not torch.allclose(logits, net.fc(pool3))


def test_pooling_quirks_of_the_2015_graph(net):
    x = torch.rand(1, 1280, 8, 8)
    assert net.Mixed_7b.pool == "avg" and net.Mixed_7c.pool == "max"
    # count_include_pad=False: a constant map stays constant at the border.
    pooled = inception_module._same_size_pool(torch.ones(1, 1, 4, 4), "avg")
    assert torch.equal(pooled, torch.ones(1, 1, 4, 4))
    assert net.Mixed_7b(x).shape == (1, 2048, 8, 8)


def test_extractor_end_to_end_on_small_grayscale(net):
    images = torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8)  # (N, H, W): grayscale
    extractor = InceptionExtractor(net)
    features, probs = extractor.run(images, batch_size=2)
    assert features.shape == (3, 2048) and features.dtype == np.float64
    assert probs.shape == (3, 1008)
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert extractor.describe()["weights_sha256"] == WEIGHTS_SHA256


def test_channels_last_extraction_matches_the_plain_layout(net):
    """The extractor runs NHWC for speed; the features are those of the NCHW forward."""
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    plain = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
    extractor = InceptionExtractor(net)
    with torch.no_grad():
        expected = plain(extractor.prepare(images))[0].double().numpy()
    features, _ = extractor.run(images)
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(features / scale, expected / scale, atol=1e-5)


def naive_tf1_resize(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Scalar loop of TF1 ResizeBilinear, align_corners=False."""
    in_h, in_w = x.shape
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        y = i * in_h / out_h
        y0, dy = int(np.floor(y)), y - np.floor(y)
        y1 = min(y0 + 1, in_h - 1)
        for j in range(out_w):
            xx = j * in_w / out_w
            x0, dx = int(np.floor(xx)), xx - np.floor(xx)
            x1 = min(x0 + 1, in_w - 1)
            top = x[y0, x0] + (x[y0, x1] - x[y0, x0]) * dx
            bottom = x[y1, x0] + (x[y1, x1] - x[y1, x0]) * dx
            out[i, j] = top + (bottom - top) * dy
    return out


@pytest.mark.parametrize(
    "size_in,size_out", [((5, 6), (7, 9)), ((9, 8), (4, 3)), ((28, 28), (299, 299))]
)
def test_tf1_resize_matches_a_scalar_loop(size_in, size_out):
    x = torch.rand(1, 1, *size_in) * 255
    got = resize_tf1_bilinear(x, size_out)[0, 0].double().numpy()
    np.testing.assert_allclose(
        got, naive_tf1_resize(x[0, 0].double().numpy(), *size_out), atol=1e-3
    )


def test_tf1_resize_differs_from_half_pixel_resize():
    x = torch.rand(1, 1, 28, 28)
    tf1 = resize_tf1_bilinear(x, (299, 299))
    half_pixel = resize_torch_bilinear(x, (299, 299), antialias=False)
    assert tf1[..., 0, 0] == x[..., 0, 0]  # TF1 samples the top-left pixel exactly
    assert not torch.allclose(tf1, half_pixel, atol=1e-3)


def test_input_rules(net):
    images = torch.full((1, 1, 28, 28), 255, dtype=torch.uint8)
    for rule in ("tf1", "pytorch-fid"):
        x = InceptionExtractor(net, resize_rule=rule).prepare(images)
        assert x.shape == (1, 3, 299, 299)
        assert torch.allclose(x, torch.full_like(x, 1.0 if rule == "pytorch-fid" else 127 / 128))
    ramp = torch.arange(28 * 28, dtype=torch.float32).reshape(1, 1, 28, 28) % 256
    x = InceptionExtractor(net, resize_rule="pytorch-fid").prepare(ramp.to(torch.uint8))
    expected = 2 * F.interpolate(ramp / 255, size=(299, 299), mode="bilinear") - 1
    assert torch.allclose(x[:, :1], expected, atol=1e-6)
    with pytest.raises(UsageError, match="resize rule"):
        InceptionExtractor(net, resize_rule="nearest")


def test_channel_and_dtype_rules():
    gray = torch.randint(0, 256, (2, 1, 4, 4), dtype=torch.uint8)
    rgb = match_channels(gray, 3, "inception")
    assert rgb.shape == (2, 3, 4, 4) and torch.equal(rgb[:, 2], gray[:, 0])
    with pytest.raises(UsageError, match="1-channel images, got 3"):
        match_channels(rgb, 1, "digits")
    with pytest.raises(UsageError, match="uint8"):
        as_uint8_images(torch.rand(2, 1, 4, 4))
    with pytest.raises(UsageError, match="shape"):
        as_uint8_images(torch.zeros(4, 4, dtype=torch.uint8))


def test_missing_weights_offline_says_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MINMAX_CACHE", str(tmp_path))
    path = tmp_path / "weights" / "pt_inception-2015-12-05-6726825d.pth"
    assert default_weights_path() == path
    with pytest.raises(UsageError, match="not found at") as err:
        load_inception_net(allow_download=False)
    assert str(path) in str(err.value) and "github.com/mseitzer/pytorch-fid" in str(err.value)


def test_failed_download_leaves_nothing(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(UsageError, match="cannot download"):
        load_inception_net(tmp_path / "w.pth")
    assert not list(tmp_path.iterdir())


def test_download_of_the_wrong_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: io.BytesIO(b"<html>rate limited"))
    with pytest.raises(UsageError, match="SHA-256"):
        load_inception_net(tmp_path / "w.pth")
    assert not list(tmp_path.iterdir())


def test_wrong_hash_file_is_refused_before_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "w.pth"
    torch.save({"fc.weight": torch.zeros(1)}, path)

    def never(*args, **kwargs):
        raise AssertionError("torch.load called on an unverified file")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(UsageError, match="SHA-256"):
        load_inception_net(path, allow_download=False)


def test_verified_file_loads(tmp_path, monkeypatch, net):
    path = tmp_path / "w.pth"
    torch.save(net.state_dict(), path)
    monkeypatch.setattr(
        inception_module, "WEIGHTS_SHA256", hashlib.sha256(path.read_bytes()).hexdigest()
    )
    loaded = load_inception_net(path, allow_download=False)
    for (k, a), b in zip(net.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
