"""The ONNX graph of G against PyTorch's G, under ONNX Runtime (minmax.export.onnx).

Tolerance: |x_onnx - x_torch| <= ATOL + RTOL·|x_torch|, ATOL = 1e-4, RTOL = 1e-5, justified
in minmax.export.onnx: float32 rounding between two runtimes' kernels, measured ≤ 2.6e-6 on
these cases, and 1/78 of one 8-bit pixel level.
"""

import numpy as np
import pytest
import torch

from minmax.config import ModelConfig
from minmax.data.standardize import Standardizer, with_units
from minmax.errors import UsageError
from minmax.export.onnx import ATOL, RTOL, example_inputs, export_onnx, run_onnx
from minmax.models import build_networks, rebuild

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
pytest.importorskip("onnxruntime")

IMAGES = {"z_dim": 8, "g_channels": 8, "d_channels": 8}
CASES = {
    "dcgan": (ModelConfig(arch="dcgan", **IMAGES), (1, 28, 28), 0),
    "dcgan-conditional": (ModelConfig(arch="dcgan", conditional=True, **IMAGES), (3, 32, 32), 5),
    "mlp": (ModelConfig(z_dim=2, g_width=16, g_depth=2), (2,), 0),
    # the points preset's G: a code prior (K codes, offsets) and the user's units around it
    "mlp-codes-units": (
        ModelConfig(z_dim=4, codes=16, code_spread=0.5, code_init="box", g_width=16, g_depth=2),
        (2,),
        0,
    ),
}
SLOW = {  # every other architecture, with spectral norm and (BigGAN) self-attention
    "biggan-conditional": (
        ModelConfig(
            arch="biggan",
            conditional=True,
            attention_res=8,
            g_spectral_norm=True,
            z_dim=16,
            g_channels=8,
            d_channels=8,
        ),
        (3, 32, 32),
        5,
    ),
    "resnet": (ModelConfig(arch="resnet", g_spectral_norm=True, **IMAGES), (3, 32, 32), 0),
}
CASES.update(SLOW)
UNITS = Standardizer(mean=(1000.0, -3.0), std=(40.0, 0.01))  # mm with an offset; tiny spread


def trained_looking(name: str) -> torch.nn.Module:
    """G in eval mode with images spread over [-1, 1] (DCGAN's init, std 0.02, gives |x| <
    0.01; weights ×5 give |x| up to 1) and batch-norm statistics that are not the defaults."""
    cfg, shape, n_classes = CASES[name]
    torch.manual_seed(0)
    _, _, spec = build_networks(cfg, shape, n_classes)
    if name.endswith("units"):
        spec = with_units(spec, UNITS)
    G = rebuild(spec, "G")
    with torch.no_grad():
        for weight in G.parameters() if len(shape) == 3 else ():  # images only
            weight.mul_(5 if weight.ndim > 1 else 1)
        for seed in range(3):  # move the running statistics
            G(*example_inputs(G, 16, seed=seed))
    return G.eval().requires_grad_(False)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in CASES]
)
def test_onnx_graph_matches_pytorch_for_any_batch(tmp_path, name):
    G = trained_looking(name)
    path = export_onnx(G, tmp_path / "model.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    names = [i.name for i in model.graph.input]
    assert names == (["z", "y"] if G.n_classes else ["z"])
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # a named, free batch size
    assert not list(tmp_path.glob("*.data"))  # weights inside the one file
    for n, seed in [(1, 3), (37, 4)]:
        inputs = example_inputs(G, n, seed=seed)
        with torch.no_grad():
            expected = G(*inputs)
        got = torch.from_numpy(run_onnx(path, inputs))
        torch.testing.assert_close(got, expected, rtol=RTOL, atol=ATOL)
    if name.endswith("units"):  # in the user's units: the decode is in the graph too
        assert float(got[:, 0].mean()) > 500


def test_a_graph_that_does_not_match_is_refused(tmp_path, monkeypatch):
    G = trained_looking("mlp")
    real = run_onnx

    def off_by_a_little(path, inputs):
        return real(path, inputs) + np.float32(1e-3)

    monkeypatch.setattr("minmax.export.onnx.run_onnx", off_by_a_little)
    with pytest.raises(UsageError, match="does not reproduce G"):
        export_onnx(G, tmp_path / "model.onnx")
