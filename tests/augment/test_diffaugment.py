import pytest
import torch

from minmax.augment import POLICIES, DiffAugment, parse_policy
from minmax.augment.diffaugment import color, cutout, translation
from minmax.errors import UsageError


def batch(n=6, c=3, h=8, w=8, seed=0):
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("name", list(POLICIES))
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_gradient_and_seed(name, channels):
    x = batch(c=channels).requires_grad_(True)
    out = POLICIES[name](x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    out.sum().backward()  # differentiable: G's gradient flows through the transform
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    again = POLICIES[name](x.detach(), torch.Generator().manual_seed(1))
    assert torch.equal(out.detach(), again)


def test_translation_moves_content_by_whole_pixels_and_fills_zeros():
    x = torch.zeros(200, 1, 8, 8)
    x[:, :, 3, 4] = 1.0  # one lit pixel
    out = translation(x, torch.Generator().manual_seed(0))
    # Each image still holds that pixel once (shift ≤ 1 pixel keeps it inside an 8×8 image).
    assert torch.equal(out.sum(dim=(1, 2, 3)), torch.ones(200))
    rows, cols = out[:, 0].nonzero()[:, 1], out[:, 0].nonzero()[:, 2]
    assert set((rows - 3).tolist()) == {-1, 0, 1} and set((cols - 4).tolist()) == {-1, 0, 1}


def test_cutout_zeroes_one_square_of_half_the_side():
    x = torch.ones(500, 1, 8, 8)
    out = cutout(x, torch.Generator().manual_seed(0))
    zeros = (out == 0).sum(dim=(1, 2, 3))
    assert zeros.max() == 16  # a 4×4 square fully inside
    assert zeros.min() >= 4  # centred inside the image: at least a 2×2 corner remains
    assert set(out.unique().tolist()) == {0.0, 1.0}


def test_color_keeps_a_constant_image_constant_and_changes_brightness():
    x = torch.full((100, 3, 4, 4), 0.2)
    out = color(x, torch.Generator().manual_seed(0))
    per_image = out.flatten(1)
    assert torch.allclose(per_image.std(dim=1), torch.zeros(100), atol=1e-6)
    shift = per_image[:, 0] - 0.2
    assert shift.min() >= -0.5 - 1e-6 and shift.max() <= 0.5 + 1e-6 and shift.std() > 0.2


def test_policy_parsing_and_identity():
    assert parse_policy(" translation, cutout ,") == ["translation", "cutout"]
    assert not DiffAugment("", torch.Generator())
    x = batch()
    assert DiffAugment("", torch.Generator())(x) is x
    with pytest.raises(UsageError, match="did you mean 'cutout'"):
        parse_policy("translation,cutuot")
