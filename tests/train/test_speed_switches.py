"""Each speed switch trains the same model (to float tolerance) as the plain path on CPU."""

import pytest
import torch

from minmax.augment import DiffAugment
from minmax.config import resolve
from minmax.data.images import ImageDataset
from minmax.data.sources import ImageSource, resolve_data
from minmax.objectives import get_objective
from minmax.train import loop
from minmax.train.loop import build_run, iteration

TOY = ["model.g_width=16", "model.d_width=16", "model.z_dim=4", "train.batch_size=32",
       "loss.r1_gamma=0.1", "loss.reg_every=2"]  # fmt: skip
IMAGES = ["model.g_channels=8", "model.d_channels=8", "model.z_dim=8", "train.batch_size=8",
          "model.conditional=true"]  # fmt: skip


def images():
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8, generator=gen)
    return ImageSource(ImageDataset(x, torch.arange(32) % 4, 4, "random", list("abcd")))


def steps(preset, overrides, source=None, n=4):
    """Parameters of G and D after ``n`` iterations, and the last losses."""
    cfg = resolve(preset, overrides=overrides)
    source = source or resolve_data(cfg.data)
    run = build_run(cfg, source)
    augment = DiffAugment(cfg.augment.policy, run.local_rng)
    for _ in range(n):
        losses = iteration(cfg, run, source, get_objective(cfg.loss.objective), augment)
        run.count.step += 1
    params = {f"{k}.{n}": p.detach().clone() for k, m in (("G", run.G), ("D", run.D))
              for n, p in m.named_parameters()}  # fmt: skip
    steps.grads = {f"{k}.{n}": p.grad.clone() for k, m in (("G", run.G), ("D", run.D))
                   for n, p in m.named_parameters() if p.grad is not None}  # fmt: skip
    return params, torch.stack(losses)


def assert_params_close(a, b, rtol=1e-4, atol=1e-5):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=rtol, atol=atol, msg=key)


@pytest.mark.parametrize("impl", ["foreach", "loop"])
def test_adam_implementations_compute_the_same_update(impl):
    fused, _ = steps("ring", TOY)
    other, _ = steps("ring", [*TOY, f"train.adam={impl}"])
    assert_params_close(fused, other)


def test_gradient_accumulation_matches_one_big_batch():
    # The MLP has no batch-norm: micro-batches see exactly the maths of the whole batch.
    whole, _ = steps("ring", TOY)
    accumulated, _ = steps("ring", [*TOY, "train.accum_steps=4"])
    assert_params_close(whole, accumulated)


def test_accumulation_that_does_not_divide_the_batch_is_refused():
    from minmax.errors import UsageError

    with pytest.raises(UsageError, match="multiple of 3"):
        steps("ring", [*TOY, "train.accum_steps=3"])


def test_channels_last_trains_the_same_image_model():
    # Other conv kernels sum in another order. Adam's first steps are ±lr where a gradient is
    # near 0, so one float's difference there moves a weight by up to lr: compare gradients
    # tightly, weights to within the step size.
    plain, _ = steps("mnist-dcgan", IMAGES, images(), n=1)
    plain_grads = steps.grads
    nhwc, _ = steps("mnist-dcgan", [*IMAGES, "train.channels_last=true"], images(), n=1)
    assert_params_close(plain_grads, steps.grads, rtol=1e-4, atol=1e-6)
    assert_params_close(plain, nhwc, rtol=0, atol=1e-3)


def test_bf16_autocast_on_cpu_keeps_fp32_weights_and_close_losses():
    _, fp32 = steps("mnist-dcgan", IMAGES, images(), n=1)
    params, bf16 = steps("mnist-dcgan", [*IMAGES, "train.precision=bf16"], images(), n=1)
    assert all(p.dtype == torch.float32 for p in params.values())
    assert torch.isfinite(bf16).all()
    torch.testing.assert_close(bf16, fp32, rtol=0.05, atol=0.02)  # bf16 has 8 mantissa bits


def test_compile_trains_the_same_model():
    pytest.importorskip("torch._inductor")
    if loop.compile_unavailable(torch.device("cpu")):
        pytest.skip(loop.compile_unavailable(torch.device("cpu")))
    eager, _ = steps("ring", TOY, n=2)
    compiled, _ = steps("ring", [*TOY, "train.compile=true"], n=2)
    assert_params_close(eager, compiled, rtol=1e-3, atol=1e-5)


def test_compile_falls_back_to_eager_with_a_message(monkeypatch, capsys):
    monkeypatch.setattr(loop.shutil, "which", lambda name: None)
    eager, _ = steps("ring", TOY, n=2)
    fallback, _ = steps("ring", [*TOY, "train.compile=true"], n=2)
    assert "needs a C++ compiler" in capsys.readouterr().err
    assert_params_close(eager, fallback, rtol=0, atol=0)


def test_a_training_iteration_never_waits_on_the_device(monkeypatch):
    """No .item()/.tolist()/bool(tensor) inside the step: the host never blocks on a GPU."""
    cfg = resolve("mnist-dcgan", overrides=[*IMAGES, "loss.r1_gamma=1", "augment.policy=color"])
    source = images()
    run = build_run(cfg, source)
    augment = DiffAugment(cfg.augment.policy, run.local_rng)
    objective = get_objective(cfg.loss.objective)

    def forbidden(*args, **kwargs):
        raise AssertionError("host-device synchronisation inside the training step")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    for _ in range(2):
        iteration(cfg, run, source, objective, augment)
        run.count.step += 1


def test_bad_switch_values_are_refused():
    from minmax.errors import UsageError

    for override, match in [
        ("train.precision=fp16", "train.precision"),
        ("train.device=tpu", "train.device"),
        ("train.adam=sgd", "train.adam"),
        ("train.accum_steps=0", "accum_steps"),
    ]:
        with pytest.raises(UsageError, match=match):
            resolve("ring", overrides=[override])


def test_compile_leaves_spectrally_normalised_networks_eager(capsys):
    if loop.compile_unavailable(torch.device("cpu")):
        pytest.skip(loop.compile_unavailable(torch.device("cpu")))
    cfg = resolve("cifar10-sngan", overrides=["model.g_channels=8", "model.d_channels=8"])
    G, D, _ = loop.build_networks(cfg.model, (3, 32, 32), 0)
    fast = loop.compiler(True, torch.device("cpu"))
    assert fast(D) is D and fast(D) is D  # eager, and said once
    assert fast(G) is not G  # G has no spectral norm here: compiled
    assert capsys.readouterr().err.count("spectral norm") == 1
