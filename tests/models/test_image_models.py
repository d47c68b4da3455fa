"""Contract tests every image family inherits, plus BigGAN's tools (layers.py)."""

import copy
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from minmax.config import ModelConfig
from minmax.errors import UsageError
from minmax.models import build_networks, rebuild
from minmax.models.layers import SelfAttention, orthogonal_penalty, truncated_normal
from minmax.models.r3gan import RESOLUTIONS as R3GAN_SIDES

RESOLUTIONS = {"dcgan": [28, 32, 64], "resnet": [28, 32, 64], "biggan": [28, 32, 64],
               "r3gan": [28, 32, 64]}  # fmt: skip
NO_SN = {"r3gan"}  # families without spectral norm (no normalisation at all)
ATTENTION_SIDES = {28: [14], 32: [8, 16], 64: [8, 16, 32]}  # biggan
N_CLASSES = 10
N = 4


def make_cfg(arch, resolution=32, conditional=False, sn=False, attention_res=None, **kw):
    if attention_res is None:  # every biggan case runs attention, at the lowest side
        attention_res = ATTENTION_SIDES[resolution][0] if arch == "biggan" else 0
    kw = {"z_dim": 8, "g_channels": 8, "d_channels": 8, **kw}
    return ModelConfig(
        arch=arch,
        g_spectral_norm=sn,
        d_spectral_norm=sn,
        conditional=conditional,
        attention_res=attention_res,
        **kw,
    )


def build(arch, resolution, channels=1, conditional=False, sn=False, seed=0, **kw):
    cfg = make_cfg(arch, resolution, conditional, sn, **kw)
    torch.manual_seed(seed)
    return build_networks(cfg, (channels, resolution, resolution), N_CLASSES)


def inputs(G, seed=1):
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(N, G.z_dim, generator=rng)
    y = torch.randint(G.n_classes, (N,), generator=rng) if G.n_classes else None
    return z, y


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


CASES = [
    pytest.param(arch, res, channels, cond, sn, id=f"{arch}-{res}px-c{channels}-{tag}{sn_tag}")
    for arch, sides in RESOLUTIONS.items()
    for res in sides
    for channels in (1, 3)
    for cond, tag in ((False, "uncond"), (True, "cond"))
    for sn, sn_tag in ((False, ""), (True, "-sn"))
    if not (sn and arch in NO_SN)
]


@pytest.mark.parametrize("arch, resolution, channels, conditional, sn", CASES)
def test_contract(arch, resolution, channels, conditional, sn):
    G, D, spec = build(arch, resolution, channels, conditional, sn)
    assert json.loads(json.dumps(spec)) == spec
    assert G.n_classes == D.n_classes == (N_CLASSES if conditional else 0)

    # Seeded construction is deterministic (buffers too: BN statistics, SN vectors), and
    # rebuilding from the JSON spec makes the same modules as build_networks.
    torch.manual_seed(0)
    G2, D2 = rebuild(spec, "G"), rebuild(spec, "D")
    assert_same_state(G, G2)
    assert_same_state(D, D2)

    # Shapes, range, finite gradients to every parameter.
    z, y = inputs(G)
    x = G(z, y)
    assert x.shape == (N, channels, resolution, resolution)
    assert torch.isfinite(x).all() and x.abs().max() <= 1
    logits = D(x, y)
    assert logits.shape == (N,)
    logits.sum().backward()
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    torch.testing.assert_close(G2(z, y), x.detach(), rtol=0, atol=0)

    # Loaded with the trained state (SN vectors and BN statistics moved), the rebuilt modules
    # compute the same thing (eval mode).
    G2.load_state_dict(G.state_dict())
    D2.load_state_dict(D.state_dict())
    for m in (G, D, G2, D2):
        m.eval()
    with torch.no_grad():
        x = G(z, y)
        torch.testing.assert_close(G2(z, y), x, rtol=0, atol=0)
        torch.testing.assert_close(D2(x, y), D(x, y), rtol=0, atol=0)


@pytest.mark.parametrize("arch", list(RESOLUTIONS))
def test_conditional_outputs_depend_on_y(arch):
    G, D, _ = build(arch, 32, 3, conditional=True, sn=arch not in NO_SN)
    # Class-conditional BN starts at γ = 1, β = 0 for every class: move off the init first.
    torch.manual_seed(2)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.1 * torch.randn_like(p))
    G.eval()
    D.eval()
    z, _ = inputs(G)
    y0, y1 = torch.zeros(N, dtype=torch.long), torch.ones(N, dtype=torch.long)
    with torch.no_grad():
        x0, x1 = G(z, y0), G(z, y1)
        assert (x0 - x1).abs().max() > 1e-4
        assert (D(x0, y0) - D(x0, y1)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="pass y"):
        G(z)


@pytest.mark.parametrize("arch", list(RESOLUTIONS))
def test_conditional_without_classes_raises(arch):
    cfg = make_cfg(arch, conditional=True)
    with pytest.raises(UsageError, match="needs labelled data"):
        build_networks(cfg, (3, 32, 32), 0)
    # Unconditional when not asked, even with labelled data.
    G, D, spec = build_networks(make_cfg(arch), (3, 32, 32), N_CLASSES)
    assert G.n_classes == D.n_classes == spec["G"]["n_classes"] == 0


@pytest.mark.parametrize("arch", list(RESOLUTIONS))
@pytest.mark.parametrize(
    "shape", [(1, 16, 16), (3, 128, 128), (1, 28, 32), (3, 30, 30), (784,), (1, 1, 28, 28)]
)
def test_unsupported_shapes_raise(arch, shape):
    if arch == "r3gan" and len(shape) == 3 and shape[1] == shape[2] in R3GAN_SIDES:
        pytest.skip("r3gan supports 28 px and powers of two from 8 to 1024")
    with pytest.raises(UsageError, match=f"arch={arch}") as err:
        build_networks(make_cfg(arch, attention_res=0), shape, 0)
    message = str(err.value)
    assert "\n" not in message
    if len(shape) == 3:
        assert "28, 32, 64" in message


@pytest.mark.parametrize("arch", list(RESOLUTIONS))
def test_constructor_rejects_unsupported_resolution(arch):
    G, _, spec = build(arch, 32)
    with pytest.raises(UsageError, match="28, 32,? (and )?64"):
        type(G)(**{**spec["G"], "resolution": 48})


@pytest.mark.parametrize("arch", ["dcgan", "resnet", "r3gan"])
def test_attention_is_biggan_only(arch):
    with pytest.raises(UsageError, match="attention_res=16 is for arch=biggan"):
        build_networks(make_cfg(arch, attention_res=16), (3, 32, 32), 0)


@pytest.mark.parametrize("resolution", [28, 32, 64])
def test_biggan_attention_sides(resolution):
    for side in ATTENTION_SIDES[resolution]:
        G, D, _ = build("biggan", resolution, attention_res=side)
        for net in (G, D):
            assert sum(isinstance(m, SelfAttention) for m in net.modules()) == 1
    G, D, _ = build("biggan", resolution, attention_res=0)
    assert not any(isinstance(m, SelfAttention) for m in [*G.modules(), *D.modules()])
    for side in (4, 7, resolution, 2 * resolution, 12):
        if side in ATTENTION_SIDES[resolution]:
            continue
        with pytest.raises(UsageError, match="can attend at"):
            build("biggan", resolution, attention_res=side)


def test_biggan_attention_is_placed_at_its_side():
    G, D, _ = build("biggan", 32, attention_res=16)
    seen = []
    for net in (G, D):
        net.attention.register_forward_hook(lambda m, args, out: seen.append(out.shape[-1]))
    z, y = inputs(G)
    D(G(z, y), y)
    assert seen == [16, 16]


def test_biggan_conditional_needs_a_chunk_per_block():
    with pytest.raises(UsageError, match="model.z_dim >= 4"):
        build("biggan", 32, conditional=True, z_dim=3)
    G, _, _ = build("biggan", 64, conditional=True, z_dim=12)
    assert G.chunks == [3, 3, 2, 2, 2]  # one for the linear layer, one per block


@pytest.mark.parametrize("arch", list(RESOLUTIONS))
@pytest.mark.parametrize("sn", [False, True])
def test_r1_double_backward(arch, sn):
    """R1 differentiates ‖∇_x D‖²: D must support a second backward pass."""
    if sn and arch in NO_SN:
        pytest.skip(f"{arch} has no spectral norm")
    G, D, _ = build(arch, 28, 1, conditional=True, sn=sn)
    z, y = inputs(G)
    x = G(z, y).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x, y).sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in D.parameters() if p.grad is not None)
    if sn:
        assert D.fc.parametrizations.weight.original.grad is not None


@pytest.mark.parametrize("arch", list(RESOLUTIONS))
def test_deepcopy_and_safetensors_round_trip(arch, tmp_path):
    """G_ema is a deepcopy of G; checkpoints store state_dicts as safetensors."""
    G, D, spec = build(arch, 32, 3, conditional=True, sn=arch not in NO_SN)
    z, y = inputs(G)
    G(z, y).mean().backward()  # one train-mode pass moves the SN power-iteration vectors
    G_ema = copy.deepcopy(G).eval()
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, tmp_path / "G.safetensors")
    G2 = rebuild(spec, "G")
    G2.load_state_dict(load_file(tmp_path / "G.safetensors"))
    G2.eval()
    with torch.no_grad():
        torch.testing.assert_close(G2(z, y), G_ema(z, y), rtol=0, atol=0)


# --- orthogonal penalty ---------------------------------------------------------------------


def brute_force_penalty(W):
    W = W.flatten(1)
    gram = W @ W.T
    return (gram * (1 - torch.eye(len(W)))).square().sum()


def test_orthogonal_penalty_zero_for_orthogonal_rows():
    torch.manual_seed(0)
    layer = nn.Linear(16, 6, bias=True)
    q, _ = torch.linalg.qr(torch.randn(16, 6))  # orthonormal columns
    with torch.no_grad():
        layer.weight.copy_(q.T * torch.linspace(0.5, 3.0, 6)[:, None])  # rows: any norms
        layer.bias.fill_(5.0)
    assert orthogonal_penalty(layer).item() == pytest.approx(0.0, abs=1e-5)
    with torch.no_grad():
        layer.weight.add_(0.1 * torch.randn_like(layer.weight))
    value = orthogonal_penalty(layer)
    assert value.item() > 1e-3
    assert value.item() == pytest.approx(brute_force_penalty(layer.weight).item(), rel=1e-5)


def test_orthogonal_penalty_sums_layers_and_skips_embeddings_and_1d():
    torch.manual_seed(0)
    tall = nn.Linear(3, 20)  # out > in: computed through Wᵀ W
    conv = nn.Conv2d(4, 5, 3)
    up = nn.ConvTranspose2d(6, 5, 4)  # weight (in, out, k, k): rows are output channels
    net = nn.Sequential(tall, conv, up, nn.BatchNorm1d(7), nn.Embedding(10, 4))
    expected = (
        brute_force_penalty(tall.weight)
        + brute_force_penalty(conv.weight)
        + brute_force_penalty(up.weight.transpose(0, 1))
    )
    torch.testing.assert_close(orthogonal_penalty(net), expected, rtol=1e-4, atol=1e-4)
    assert orthogonal_penalty(nn.Embedding(10, 4)).item() == 0


def test_orthogonal_penalty_uses_the_original_weight_under_spectral_norm():
    torch.manual_seed(0)
    plain = nn.Linear(8, 5)
    normed = spectral_norm(copy.deepcopy(plain))
    embed = spectral_norm(nn.Embedding(10, 8))
    net = nn.ModuleList([normed, embed])
    value = orthogonal_penalty(net)
    torch.testing.assert_close(value, orthogonal_penalty(plain), rtol=0, atol=0)
    value.backward()
    assert normed.parametrizations.weight.original.grad.abs().sum() > 0
    assert embed.parametrizations.weight.original.grad is None


@pytest.mark.parametrize("arch", list(RESOLUTIONS))
def test_orthogonal_penalty_on_generators(arch):
    G, _, _ = build(arch, 32, 3, conditional=True, sn=arch not in NO_SN)
    value = orthogonal_penalty(G)
    assert value.ndim == 0 and torch.isfinite(value) and value > 0
    value.backward()


# --- truncation trick -----------------------------------------------------------------------


def test_truncated_normal_respects_threshold():
    z = truncated_normal(500, 16, 0.5, torch.Generator().manual_seed(0))
    assert z.shape == (500, 16)
    assert z.abs().max() <= 0.5
    assert z.std() > 0.2  # still spread over the interval, not collapsed to 0
    again = truncated_normal(500, 16, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)


@pytest.mark.parametrize("threshold", [None, 0, 0.0])
def test_truncated_normal_without_threshold_is_plain_normal(threshold):
    z = truncated_normal(8, 4, threshold, torch.Generator().manual_seed(3))
    assert torch.equal(z, torch.randn(8, 4, generator=torch.Generator().manual_seed(3)))


def test_truncated_normal_rejects_negative_threshold():
    with pytest.raises(UsageError, match="positive"):
        truncated_normal(4, 4, -1.0, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("side", [7, 8])
def test_attention_attends_over_pooled_keys_and_values(side):
    """o_i = Σ_j softmax_j(q_i · k_j) v_j with k, v 2×2 max-pooled (BigGAN), odd sides kept."""
    torch.manual_seed(0)
    att = SelfAttention(16)
    with torch.no_grad():
        att.gamma.fill_(0.5)
    x = torch.randn(2, 16, side, side)
    q = att.f(x).flatten(2)
    k, v = (torch.nn.functional.max_pool2d(m(x), 2, ceil_mode=True) for m in (att.g, att.h))
    assert k.shape[-1] == (side + 1) // 2
    k, v = k.flatten(2), v.flatten(2)
    expected = torch.empty(2, 16, side * side)
    for n in range(2):
        for i in range(side * side):
            weights = torch.softmax(q[n, :, i] @ k[n], dim=0)
            expected[n, :, i] = v[n] @ weights
    out = att(x)
    torch.testing.assert_close(out, x + 0.5 * expected.view_as(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("d_batch_norm", [True, False])
def test_dcgan_d_batch_norm_decides_if_logits_see_batch_mates(d_batch_norm):
    # model.d_batch_norm=false: no BN in D, so in training mode each logit is its own image's,
    # as R1/R2 and RpGAN's pairs assume; with it, changing one image moves the others' logits.
    _, D, spec = build("dcgan", 28, d_batch_norm=d_batch_norm)
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    assert has_bn == d_batch_norm
    assert rebuild(spec, "D").state_dict().keys() == D.state_dict().keys()
    x = torch.randn(N, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    other = x.clone()
    other[1:] = torch.randn(N - 1, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    D.train()
    same = torch.allclose(D(x)[0], D(other)[0])
    assert same == (not d_batch_norm)


def test_dcgan_g_extra_convs_add_depth_and_keep_the_paper_g_at_zero():
    # 0 builds (and seeds) exactly the paper's G; k adds k 3×3 convs at each of its sides,
    # conditioned like its other layers, and a rebuilt G has the same tensors.
    plain, _, _ = build("dcgan", 28)
    zero, _, _ = build("dcgan", 28, g_extra_convs=0)
    assert_same_state(plain, zero)
    G, _, spec = build("dcgan", 28, conditional=True, g_extra_convs=2)
    convs = [m for m in G.modules() if type(m) is nn.Conv2d]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 4  # 2 at 7×7 and 2 at 14×14
    assert rebuild(spec, "G").state_dict().keys() == G.state_dict().keys()
    z, y = inputs(G)
    x = G(z, y)
    assert x.shape == (N, 1, 28, 28)
    x.abs().sum().backward()
    assert all(c.weight.grad is not None and c.weight.grad.abs().sum() > 0 for c in convs)
