"""G as an ONNX graph (``minmax export --onnx``): for apps and runtimes without PyTorch.

Inputs ``z``, float32 (batch, z_dim), and, for a class-conditional G only, ``y``, int64
(batch,) class indices; output ``x``, float32: images (batch, C, H, W) in [-1, 1], or points
(batch, d) in the training data's units. The batch size is dynamic.

Truncation is not in the graph, on purpose: it is a way of drawing z (entries beyond ±t are
redrawn, ``minmax.models.layers.truncated_normal``), not a part of G. A graph cannot redraw
random numbers, and clipping z instead would give other samples than ``minmax sample
--truncation``; so callers truncate when they draw z, as the model card shows.

Exported by ``torch.onnx.export(dynamo=True)`` (torch.export, then onnxscript), the exporter
PyTorch maintains; every minmax G exports with it (the code prior's ``searchsorted``, which
ONNX lacks, is written as a comparison count for that reason: ``minmax.models.codes``).

onnx, onnxscript and onnxruntime are the optional extra ``minmax[onnx]``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from minmax.errors import UsageError

# ONNX Runtime against PyTorch, both float32 on CPU: |x_onnx - x_torch| <= ATOL + RTOL·|x_torch|.
# The two run other kernels (MLAS vs oneDNN) that sum a layer's products in another order, so
# they differ by float32 rounding, which grows with the size of the pre-activations. Measured
# (2-core AVX2 CPU): 1.2e-7 on a trained tiny DCGAN; ≤ 2.6e-6 on DCGAN, conditional DCGAN,
# BigGAN and ResNet generators whose images span [-1, 1]; 2.2e-5 with every weight ×10
# (pre-activations in the hundreds). ATOL is 5× the worst of these and 1/78 of one 8-bit pixel
# level (2/255 in [-1, 1]): an image from the graph is the same image, one level apart at most
# where a value sits on a rounding boundary. Points are in the data's units, of any scale:
# RTOL covers 1 float32 ulp (6e-5 at 1000) with room; measured 6.1e-5 at |x| ≈ 1000.
ATOL = 1e-4
RTOL = 1e-5
INLINE_BYTES = 1 << 30  # weights above 1 GiB go to model.onnx.data (protobuf's cap is 2 GiB)


def require() -> None:
    """Fail early, before anything is written, when the ``onnx`` extra is not installed."""
    missing = []
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UsageError(
            f"--onnx needs {', '.join(missing)}: pip install 'minmax[onnx]' (or drop --onnx)"
        )


class _Unconditional(nn.Module):
    def __init__(self, G: nn.Module) -> None:
        super().__init__()
        self.G = G

    def forward(self, z: Tensor) -> Tensor:
        return self.G(z)


class _Conditional(_Unconditional):
    def forward(self, z: Tensor, y: Tensor) -> Tensor:  # type: ignore[override]
        return self.G(z, y)


def example_inputs(G: nn.Module, n: int, seed: int = 0) -> tuple[Tensor, ...]:
    """(z,) or (z, y) for G: z ~ N(0, I), y uniform over G's classes."""
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=rng)
    n_classes = getattr(G, "n_classes", 0)
    return (z, torch.randint(n_classes, (n,), generator=rng)) if n_classes else (z,)


def export_onnx(G: nn.Module, path: Path) -> Path:
    """Write G (in eval mode, on the CPU) as ``path``; check it with ONNX Runtime."""
    require()
    G = G.cpu().eval()
    conditional = bool(getattr(G, "n_classes", 0))
    graph = (_Conditional(G) if conditional else _Unconditional(G)).eval()
    inputs = example_inputs(G, 2)  # batch 2: torch.export specialises sizes 0 and 1
    batch = torch.export.Dim("batch", min=1)
    n_bytes = sum(p.numel() * p.element_size() for p in G.parameters())
    try:
        with _quiet():
            torch.onnx.export(
                graph,
                inputs,
                str(path),
                input_names=["z", "y"][: len(inputs)],
                output_names=["x"],
                dynamic_shapes=tuple({0: batch} for _ in inputs),
                dynamo=True,
                external_data=n_bytes > INLINE_BYTES,
                verbose=False,
            )
    except Exception as err:  # the exporter raises many types; the first line says what
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UsageError(f"could not export G to ONNX: {first}") from None
    check_onnx(G, path)
    return path


@contextlib.contextmanager
def _quiet():
    """Hide the exporter's progress lines, warnings and log lines (about operators G does not
    use, e.g. torchvision's): what the user needs is the result, or one line if it failed."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def run_onnx(path: Path, inputs: tuple[Tensor, ...]) -> np.ndarray:
    """x from the graph at ``path`` under ONNX Runtime (CPU)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(["x"], {k: v.numpy() for k, v in zip(names, inputs, strict=True)})[0]


@torch.no_grad()
def check_onnx(G: nn.Module, path: Path, n: int = 16) -> float:
    """The largest |x_onnx - x_torch| over n samples; a UsageError beyond ATOL/RTOL."""
    inputs = example_inputs(G, n, seed=1)
    expected = G(*inputs).numpy()
    got = run_onnx(path, inputs)
    excess = np.abs(got - expected) - (ATOL + RTOL * np.abs(expected))
    if got.shape != expected.shape or not bool((excess <= 0).all()):
        worst = float(np.abs(got - expected).max()) if got.shape == expected.shape else None
        raise UsageError(
            f"the ONNX graph does not reproduce G (shape {got.shape} vs {expected.shape}, "
            f"largest difference {worst}; tolerance {ATOL} + {RTOL}·|x|): not exported"
        )
    return float(np.abs(got - expected).max())
