"""The discrete latent code and its learned shares (minmax.models.codes)."""

import math

import pytest
import torch

from minmax.config import ModelConfig, resolve
from minmax.errors import UsageError
from minmax.models import build_networks, rebuild
from minmax.models.codes import LOGIT_BOUND, CodePrior, code_prior


def test_codes_are_drawn_with_their_shares():
    torch.manual_seed(0)
    prior = CodePrior(4, 8)
    z = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(1))
    counts = torch.bincount(prior.code_of(z), minlength=4) / len(z)
    torch.testing.assert_close(counts, torch.full((4,), 0.25), atol=0.005, rtol=0)
    prior.logits.copy_(torch.tensor([2.0, 0.0, -1.0, 0.0]))
    counts = torch.bincount(prior.code_of(z), minlength=4) / len(z)
    torch.testing.assert_close(counts, prior.shares(), atol=0.005, rtol=0)
    # Only z[:, 0] picks the code; the rest of z passes through untouched.
    rest, vectors = prior(z[:5])
    assert torch.equal(rest, z[:5, 1:])
    assert torch.equal(vectors, prior.embed(prior.code_of(z[:5])))


def test_code_of_is_searchsorted_on_the_cumulative_shares():
    """code_of counts edges below u (ONNX has no searchsorted): the same codes, edges included."""
    prior = CodePrior(7, 4)
    prior.logits.copy_(torch.tensor([2.0, 0.0, -1.0, 0.0, -8.0, 8.0, 0.5]))
    z = torch.randn(100_000, 2, generator=torch.Generator().manual_seed(2))
    edges = prior.shares().cumsum(0)
    z[:7, 0] = torch.special.ndtri(edges.double()).float()  # on the edges themselves
    u = torch.special.ndtr(z[:, 0])
    expected = torch.searchsorted(edges, u).clamp(max=6)
    assert torch.equal(prior.code_of(z), expected)


def test_a_step_moves_shares_toward_the_codes_d_prefers():
    prior = CodePrior(3, 4)
    # Code 0 for z0 < -1, code 2 for z0 > 1 (uniform shares: bins at Φ = 1/3, 2/3).
    z = torch.tensor([[-2.0, 0.0], [-2.0, 1.0], [2.0, 0.0]])
    prior.observe(z, torch.tensor([1.0, 3.0, -4.0]), rate=0.5)
    # Code 0 moves by 0.5 · mean(1, 3) = 1, code 2 by 0.5 · (-4) = -2, code 1 (not drawn) by 0;
    # then all are shifted to mean zero (the shares depend on differences only).
    torch.testing.assert_close(prior.logits, torch.tensor([1.0, 0.0, -2.0]) + 1 / 3)
    for _ in range(100):
        prior.observe(z, torch.tensor([0.0, 0.0, -100.0]), rate=1.0)
    assert prior.logits.abs().max() <= LOGIT_BOUND
    assert prior.shares().min() > 0  # a starved code can still be drawn and come back


def test_with_the_exact_log_ratio_the_shares_reach_the_data_mode_weights():
    """The founding text's D* = log P/Q: codes stuck in their modes (here codes 0-2 in a mode
    of weight 0.7, codes 3-4 in one of 0.3) get the shares that make Q's mode weights P's."""
    prior = CodePrior(5, 4)
    in_first = torch.tensor([True, True, True, False, False])
    p_first = 0.7
    z = torch.randn(4096, 2, generator=torch.Generator().manual_seed(0))
    for _ in range(300):
        q_first = prior.shares()[in_first].sum()
        d_star = torch.where(
            in_first[prior.code_of(z)],
            math.log(p_first) - q_first.log(),
            math.log(1 - p_first) - (1 - q_first).log(),
        )
        prior.observe(z, d_star, rate=0.5)
    assert prior.shares()[in_first].sum().item() == pytest.approx(p_first, abs=1e-3)


def test_an_mlp_generator_with_codes_trains_rebuilds_and_keeps_its_shares():
    cfg = ModelConfig(z_dim=3, codes=4, g_width=16, g_depth=2, d_width=16, d_depth=2)
    torch.manual_seed(0)
    G, _, spec = build_networks(cfg, (2,))
    prior = code_prior(G)
    assert prior is not None and prior.codes == 4
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    G(z).sum().backward()
    assert prior.embed.weight.grad.abs().sum() > 0
    # The same continuous z in two different codes lands in two different places.
    a, b = z[:1].clone(), z[:1].clone()
    a[0, 0], b[0, 0] = -3.0, 3.0
    assert not torch.allclose(G(a), G(b))
    prior.logits.copy_(torch.tensor([1.0, -1.0, 0.5, -0.5]))
    G2 = rebuild(spec, "G")
    G2.load_state_dict(G.state_dict())  # the shares travel with the weights (a buffer)
    assert torch.equal(code_prior(G2).logits, prior.logits)
    torch.testing.assert_close(G2(z), G(z), rtol=0, atol=0)
    assert code_prior(build_networks(ModelConfig(), (2,))[0]) is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.codes=1"], "at least 2"),
        (["model.codes=-3"], "at least 2"),
        (["train.code_rate=-0.1"], "zero or positive"),
        (["model.code_spread=0"], "positive number"),
        (["model.code_spread=-0.5"], "positive number"),
        (["model.code_spread=inf"], "positive number"),
        (["model.codes=0", "model.code_spread=0.3"], "set model.codes too"),
    ],
)
def test_bad_code_settings_are_refused(overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve("ring", overrides=overrides)


def test_spread_scales_only_the_continuous_latent():
    z = torch.randn(32, 3, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    wide = build_networks(ModelConfig(z_dim=3, codes=4, g_width=16, g_depth=2), (2,))[0]
    cfg = ModelConfig(z_dim=3, codes=4, code_spread=0.25, g_width=16, g_depth=2)
    tight, _, spec = build_networks(cfg, (2,))
    tight.load_state_dict(wide.state_dict())
    # Same code (z[:, 0] untouched), continuous part a quarter as far from zero.
    scaled = torch.cat([z[:, :1], 0.25 * z[:, 1:]], 1)
    torch.testing.assert_close(tight(z), wide(scaled), rtol=0, atol=0)
    assert rebuild(spec, "G").prior.spread == 0.25  # a rebuilt G keeps it


def test_codes_are_refused_by_families_without_them():
    with pytest.raises(UsageError, match="arch=mlp only"):
        build_networks(ModelConfig(arch="dcgan", codes=8, z_dim=8), (1, 28, 28))


def test_codes_need_a_continuous_latent_too():
    with pytest.raises(UsageError, match="z_dim >= 2"):
        build_networks(ModelConfig(z_dim=1, codes=4), (2,))


# Codes started over the data's box (model.code_init=box).


def _coded(offsets: bool, codes: int = 6) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(
        z_dim=3, codes=codes, g_width=16, g_depth=2, code_init="box" if offsets else "net"
    )
    return build_networks(cfg, (2,))[0]


def test_placed_codes_start_at_their_points_of_the_box():
    G = _coded(offsets=True)
    low, high = torch.tensor([-4.0, 10.0]), torch.tensor([4.0, 12.0])
    G.place_codes(low, high, torch.Generator().manual_seed(0))
    prior = code_prior(G)
    # A latent whose continuous part is 0 sits at its code's centre: now a point of the box.
    z = torch.zeros(prior.codes, 3)
    z[:, 0] = torch.special.ndtri((torch.arange(prior.codes) + 0.5) / prior.codes)
    centres = G(z)
    assert torch.equal(prior.code_of(z), torch.arange(prior.codes))
    assert ((centres >= low) & (centres <= high)).all()
    assert (centres.max(0).values - centres.min(0).values > 0.3 * (high - low)).all()
    # The same points from the same generator; the network is not touched.
    again = _coded(offsets=True)
    again.place_codes(low, high, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again(z), centres)
    assert torch.equal(again.net[0].weight, _coded(offsets=True).net[0].weight)


def test_offsets_train_and_travel_with_the_weights():
    torch.manual_seed(0)
    cfg = ModelConfig(z_dim=3, codes=6, g_width=16, g_depth=2, code_init="box")
    G, _, spec = build_networks(cfg, (2,))
    assert spec["G"]["code_offsets"] is True
    G.place_codes(-torch.ones(2), torch.ones(2), torch.Generator().manual_seed(0))
    z = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    G(z).sum().backward()
    assert code_prior(G).offset.weight.grad.abs().sum() > 0
    G2 = rebuild(spec, "G")
    G2.load_state_dict(G.state_dict())
    torch.testing.assert_close(G2(z), G(z), rtol=0, atol=0)


def test_without_offsets_codes_cannot_be_placed_and_old_specs_still_load():
    G = _coded(offsets=False)
    assert code_prior(G).offset is None
    with pytest.raises(ValueError, match="code_offsets"):
        G.place_codes(torch.zeros(2), torch.ones(2), torch.Generator())
    # A run folder written before code_offsets existed has no such kwarg: it rebuilds without.
    old = rebuild({"arch": "mlp", "G": {"z_dim": 3, "out_dim": 2, "width": 16, "depth": 2,
                                        "codes": 6}, "D": {}}, "G")  # fmt: skip
    old.load_state_dict(G.state_dict())


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model.code_init=boxx"], "did you mean 'box'"),
        (["model.codes=0", "model.code_init=box"], "set model.codes too"),
    ],
)
def test_bad_code_init_is_refused(overrides, message):
    with pytest.raises(UsageError, match=message):
        resolve("ring", overrides=overrides)


def test_a_boxed_run_starts_its_codes_over_the_whole_grid(tmp_path):
    from minmax.data.sources import resolve_data
    from minmax.train.loop import build_run

    cfg = resolve("grid", overrides=["model.codes=64", "model.code_init=box"])
    run = build_run(cfg, resolve_data(cfg.data))
    prior = code_prior(run.G)
    z = torch.zeros(prior.codes, cfg.model.z_dim)
    z[:, 0] = torch.special.ndtri((torch.arange(prior.codes) + 0.5) / prior.codes)
    with torch.no_grad():
        centres = run.G(z)
    # The grid's means span ±4 (std 0.05): the codes start spread over that box, not at 0.
    assert (centres.abs() <= 4.3).all()
    assert (centres.min(0).values < -2.5).all() and (centres.max(0).values > 2.5).all()
