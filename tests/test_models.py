"""Contract tests every registered architecture inherits."""

import pytest
import torch

from minmax.config import ModelConfig
from minmax.models import build_networks, rebuild

# Families that take vector data (dim,); image families have tests/models/.
VECTOR_ARCHS = ["mlp"]


@pytest.mark.parametrize("arch", VECTOR_ARCHS)
@pytest.mark.parametrize("dim", [1, 2, 5])
def test_shapes_gradients_and_rebuild(arch, dim):
    cfg = ModelConfig(arch=arch, z_dim=3, g_width=16, g_depth=2, d_width=16, d_depth=2)
    torch.manual_seed(0)
    G, D, spec = build_networks(cfg, (dim,))
    z = torch.randn(7, 3)
    x = G(z)
    assert x.shape == (7, dim)
    logits = D(x)
    assert logits.shape == (7,)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in G.parameters())
    # Rebuilt from the JSON-able spec, with the same weights, they compute the same thing.
    G2, D2 = rebuild(spec, "G"), rebuild(spec, "D")
    G2.load_state_dict(G.state_dict())
    D2.load_state_dict(D.state_dict())
    torch.testing.assert_close(D2(G2(z)), D(G(z)), rtol=0, atol=0)


@pytest.mark.parametrize("arch", VECTOR_ARCHS)
def test_seeded_init_is_deterministic(arch):
    cfg = ModelConfig(arch=arch, g_width=8, d_width=8)
    torch.manual_seed(3)
    G1, _, _ = build_networks(cfg, (2,))
    torch.manual_seed(3)
    G2, _, _ = build_networks(cfg, (2,))
    for a, b in zip(G1.parameters(), G2.parameters(), strict=True):
        assert torch.equal(a, b)
