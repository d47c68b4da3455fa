"""``minmax env``: what a bug report needs, and what ``auto`` would choose on this machine.

Versions, the device(s), the CPU flags that decide PyTorch's speed (AVX2, AVX-512,
AVX512-BF16, AMX), threads, and a speed probe of one preset per model family: the same probe
``train.precision=auto`` / ``train.channels_last=auto`` run at the start of a run
(``minmax.train.autotune``), here on stand-in data of each preset's shape.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from importlib import metadata

import torch

from minmax.machine import FLAGS, cpu_info, gpu_names, native_bf16

# One preset per model family, and the batch its probe runs at here (a small one for the
# ResNet, whose D step takes seconds on a CPU).
FAMILIES = {"mlp": ("ring", 0), "dcgan": ("mnist-dcgan", 0), "biggan": ("mnist-biggan", 0),
            "resnet": ("cifar10-sngan", 4)}  # fmt: skip
PROBE_SECONDS = 1.0


def versions() -> list[tuple[str, str]]:
    try:
        minmax = metadata.version("minmax")
    except metadata.PackageNotFoundError:
        minmax = "not installed (running from a source tree)"
    cuda = torch.version.cuda or "none (a CPU build)"
    return [
        ("minmax", minmax),
        ("torch", f"{torch.__version__} (CUDA {cuda})"),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("OS", platform.platform()),
    ]


def hardware() -> list[tuple[str, str]]:
    cpu = cpu_info()
    flags = ", ".join(f"{flag} {'yes' if flag in cpu.flags else 'no'}" for flag in FLAGS)
    bf16 = "native" if cpu.native_bf16 else "emulated (slow): auto never picks it"
    rows = [
        ("CPU", f"{cpu.model} ({platform.machine()}), {cpu.cores} usable cores"),
        ("CPU flags", flags),
        ("CPU bf16", bf16),
        ("torch kernels", cpu.capability),
        (
            "threads",
            f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op",
        ),  # fmt: skip
    ]
    gpus = gpu_names()
    if gpus:
        bf16_gpu = "yes" if native_bf16(torch.device("cuda")) else "no"
        rows.append(("GPU", f"{', '.join(gpus)} (bf16: {bf16_gpu})"))
    else:
        rows.append(("GPU", "none visible to torch"))
    return rows


def probe_rows(say: Callable[[str], None] = lambda text: None) -> list[tuple[str, str]]:
    """What ``auto`` chooses for one preset per family, with the probe's figures."""
    from minmax.config import resolve
    from minmax.train import autotune

    rows = []
    for family, (preset, batch) in FAMILIES.items():
        say(f"probing {family} ({preset}) ...")
        overrides = [f"train.batch_size={batch}"] if batch else []
        cfg = resolve(preset, overrides=overrides)
        header = autotune.preview(cfg, seconds=PROBE_SECONDS)
        choice = header.splitlines()[-1].lstrip("# ").strip()
        rows.append((f"{family} ({preset}, batch {cfg.train.batch_size})", choice))
    return rows


def report(probe: bool = True, say: Callable[[str], None] = lambda text: None) -> str:
    rows = versions() + hardware()
    if probe:
        rows += probe_rows(say)
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)
