"""Inception-v3 as in the TensorFlow FID reference (graph ``inception-2015-12-05``).

This is the network whose pool3 features define FID and KID in the literature. It differs
from torchvision's ImageNet Inception-v3 in its weights and in four details of the 2015 graph:
the pooling branch of the 35x35 (Mixed_5*), 17x17 (Mixed_6b-e) and first 8x8 (Mixed_7b)
blocks averages over the valid (unpadded) pixels only (``count_include_pad=False``); the last
block (Mixed_7c) max-pools in that branch instead; there is no auxiliary classifier; and the
classifier has 1008 outputs.

Weights: ``pt_inception-2015-12-05-6726825d.pth``, the TF graph's weights ported to PyTorch by
pytorch-fid (the same bytes torch-fidelity ships as ``weights-inception-2015-12-05-...``):
95,628,359 bytes, 566 state-dict entries (94 conv + batch-norm layers x 6 tensors, fc weight and
bias), SHA-256 6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2 (torch.hub
names files by the first 8 hex digits of that hash). Module names below match its keys.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from minmax.errors import UsageError
from minmax.metrics.features import (
    FeatureExtractor,
    match_channels,
    resize_tf1_bilinear,
    resize_torch_bilinear,
)
from minmax.metrics.files import check_sha256, default_root, download

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = (
    f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_FILE}"
)
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
WEIGHTS_BYTES = 95_628_359
N_STATE_ENTRIES = 566

RESIZE_RULES = {
    "tf1": (
        "TF FID reference: uint8 -> float, TF1 ResizeBilinear (align_corners=False, no "
        "half-pixel offset) to 299x299 on 0..255 values, then (x - 128) / 128; gray -> RGB"
    ),
    "pytorch-fid": (
        "pytorch-fid: x / 255, F.interpolate(bilinear, align_corners=False, no antialias) to "
        "299x299, then 2x - 1; gray -> RGB"
    ),
}


class ConvBN(nn.Module):
    """Bias-free convolution, batch norm (eps 1e-3, as in the TF graph), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _same_size_pool(x: Tensor, kind: str) -> Tensor:
    """3x3, stride 1 pooling that keeps the size; "avg" ignores the zero padding."""
    if kind == "avg":
        return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    return F.max_pool2d(x, 3, stride=1, padding=1)


class Mixed35(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1; 224 + pool_out channels."""

    def __init__(self, cin: int, pool_out: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        wide = self.branch5x5_2(self.branch5x5_1(x))
        deep = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = self.branch_pool(_same_size_pool(x, "avg"))
        return torch.cat([self.branch1x1(x), wide, deep, pooled], dim=1)


class Reduce35(nn.Module):
    """35x35 -> 17x17: stride-2 3x3 | 1x1-3x3-3x3/2 | maxpool/2; 384 + 96 + cin channels."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        deep = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), deep, F.max_pool2d(x, 3, stride=2)], dim=1)


class Mixed17(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7, 7x1) of width c7; 768 channels."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, **row)
        self.branch7x7_3 = ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = ConvBN(c7, 192, **row)
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        wide = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        deep = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            deep = layer(deep)
        pooled = self.branch_pool(_same_size_pool(x, "avg"))
        return torch.cat([self.branch1x1(x), wide, deep, pooled], dim=1)


class Reduce17(nn.Module):
    """17x17 -> 8x8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2; 320 + 192 + cin channels."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        short = self.branch3x3_2(self.branch3x3_1(x))
        deep = self.branch7x7x3_2(self.branch7x7x3_1(x))
        deep = self.branch7x7x3_4(self.branch7x7x3_3(deep))
        return torch.cat([short, deep, F.max_pool2d(x, 3, stride=2)], dim=1)


class Mixed8(nn.Module):
    """8x8 block whose 3x3 paths fork into parallel 1x3 and 3x1 convolutions; 2048 channels.

    ``pool`` is "avg" for Mixed_7b and "max" for Mixed_7c (the 2015 graph's quirk)."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        wide = self.branch3x3_1(x)
        deep = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(wide),
                self.branch3x3_2b(wide),
                self.branch3x3dbl_3a(deep),
                self.branch3x3dbl_3b(deep),
                self.branch_pool(_same_size_pool(x, self.pool)),
            ],
            dim=1,
        )


class FIDInceptionV3(nn.Module):
    """(n, 3, 299, 299) input in [-1, 1] -> (pool3 features (n, 2048), logits (n, 1008)).

    The logits leave out the fc bias: the reference Inception Score code (OpenAI's
    ``inception_score.py``) multiplies pool3 by the softmax layer's weight matrix only, and
    torch-fidelity's default IS feature ("logits_unbiased") does the same.
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = Mixed35(192, pool_out=32)
        self.Mixed_5c = Mixed35(256, pool_out=64)
        self.Mixed_5d = Mixed35(288, pool_out=64)
        self.Mixed_6a = Reduce35(288)
        self.Mixed_6b = Mixed17(768, c7=128)
        self.Mixed_6c = Mixed17(768, c7=160)
        self.Mixed_6d = Mixed17(768, c7=160)
        self.Mixed_6e = Mixed17(768, c7=192)
        self.Mixed_7a = Reduce17(768)
        self.Mixed_7b = Mixed8(1280, pool="avg")
        self.Mixed_7c = Mixed8(2048, pool="max")
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a):
            x = block(x)
        for block in (self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e):
            x = block(x)
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        pool3 = x.mean(dim=(2, 3))
        return pool3, pool3 @ self.fc.weight.T


def default_weights_path() -> Path:
    """``default_root()/weights/pt_inception-2015-12-05-6726825d.pth``."""
    return default_root() / "weights" / WEIGHTS_FILE


def load_inception_net(
    weights: str | Path | None = None, allow_download: bool = True
) -> FIDInceptionV3:
    """The FID Inception-v3 with its verified weights.

    ``weights`` defaults to ``default_weights_path()``. A missing file is downloaded from the
    pytorch-fid release when ``allow_download`` (and the network) allow, else a UsageError says
    where to put it. The file's SHA-256 is checked on the bytes in memory before
    ``torch.load(weights_only=True)`` reads them, so a wrong file is never unpickled.
    """
    path = Path(weights).expanduser() if weights is not None else default_weights_path()
    if not path.is_file():
        if not allow_download:
            raise UsageError(
                f"Inception weights not found at '{path}': download {WEIGHTS_URL} "
                f"(SHA-256 {WEIGHTS_SHA256}) and put it there"
            )
        download(WEIGHTS_URL, path, WEIGHTS_SHA256)
    check_sha256(path, WEIGHTS_SHA256, f"delete it and download {WEIGHTS_URL} again")
    body = path.read_bytes()
    state = torch.load(io.BytesIO(body), map_location="cpu", weights_only=True)
    net = FIDInceptionV3()
    net.load_state_dict(state)
    return net


class InceptionExtractor(FeatureExtractor):
    """FID/KID/IS features: pool3 (2048-d) and softmax of the 1008 (bias-free) logits.

    ``resize_rule`` "tf1" (default) reproduces the TF reference's input pipeline (as
    torch-fidelity and torchmetrics do); "pytorch-fid" reproduces pytorch-fid's. They differ
    slightly for images not already 299x299, so the rule is part of ``resize`` and of every
    cache key built from it.
    """

    name = "inception-2015-12-05"
    weights_sha256 = WEIGHTS_SHA256
    input_size = (299, 299)
    channels = 3
    dim = 2048
    num_classes = 1008

    def __init__(
        self, net: nn.Module, resize_rule: str = "tf1", device: str | torch.device = "cpu"
    ) -> None:
        if resize_rule not in RESIZE_RULES:
            raise UsageError(
                f"unknown Inception resize rule '{resize_rule}': use one of {sorted(RESIZE_RULES)}"
            )
        super().__init__(net, device)
        self.resize_rule = resize_rule
        self.resize = RESIZE_RULES[resize_rule]

    def prepare(self, images: Tensor) -> Tensor:
        x = match_channels(images, self.channels, self.name).float()
        if self.resize_rule == "tf1":
            return (resize_tf1_bilinear(x, self.input_size) - 128.0) / 128.0
        x = resize_torch_bilinear(x / 255.0, self.input_size, antialias=False)
        return 2.0 * x - 1.0


def load_inception(
    weights: str | Path | None = None,
    resize_rule: str = "tf1",
    device: str | torch.device = "cpu",
    allow_download: bool = True,
) -> InceptionExtractor:
    """``InceptionExtractor`` around ``load_inception_net(weights, allow_download)``."""
    return InceptionExtractor(load_inception_net(weights, allow_download), resize_rule, device)
