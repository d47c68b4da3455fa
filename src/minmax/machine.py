"""What this machine is, in the terms that decide training speed: a figure without it is
only true on the machine it came from.

``machine_summary()`` is the one line every benchmark prints and every run records;
``native_bf16(device)`` is the capability gate of ``train.precision=auto``: bf16 is only a
candidate where the hardware computes it (CUDA with bf16; CPUs with AVX512-BF16 or AMX), since
elsewhere it is emulated and measured 9–29× slower than fp32 on an AVX2 CPU (README).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache

import torch

# CPU flags that matter for PyTorch's kernels, by their Linux /proc/cpuinfo names.
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
# macOS (Apple silicon) reports features through sysctl instead.
MAC_BF16 = "hw.optional.arm.FEAT_BF16"


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str] = field(default_factory=frozenset)  # the FLAGS this CPU has
    cores: int = 1  # logical CPUs this process may run on
    capability: str = "unknown"  # the vector kernels PyTorch dispatches to (AVX2, AVX512, ...)
    arm_bf16: bool = False

    @property
    def native_bf16(self) -> bool:
        return self.arm_bf16 or any(flag in self.flags for flag in BF16_FLAGS)

    def flag_text(self) -> str:
        """``avx2 fma -avx512f ...``: a leading minus marks a flag this CPU lacks."""
        if platform.machine().lower() in ("arm64", "aarch64"):
            return "bf16" if self.arm_bf16 else "-bf16"
        return " ".join(flag if flag in self.flags else f"-{flag}" for flag in FLAGS)


def _read_cpuinfo() -> tuple[str, set[str]]:
    """Model name and flags from /proc/cpuinfo (Linux); empty where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def _sysctl(name: str) -> str:
    try:
        out = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def usable_cores() -> int:
    """Logical CPUs this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@cache
def cpu_info() -> CpuInfo:
    """This CPU, read once per process."""
    model, flags = _read_cpuinfo()
    arm_bf16 = "bf16" in flags  # Linux on ARM lists it among "Features"
    if sys.platform == "darwin":
        model = _sysctl("machdep.cpu.brand_string") or model
        arm_bf16 = _sysctl(MAC_BF16) == "1"
    model = model or platform.processor() or platform.machine() or "unknown CPU"
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        capability = "unknown"
    return CpuInfo(
        model=model,
        flags=frozenset(flag for flag in FLAGS if flag in flags),
        cores=usable_cores(),
        capability=capability,
        arm_bf16=arm_bf16,
    )


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware (the only place bf16 can pay)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_info().native_bf16
    return False


def gpu_names() -> list[str]:
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def machine_summary() -> str:
    """One line: CPU model, its flags, cores, PyTorch (and GPUs, where there are any)."""
    cpu = cpu_info()
    gpus = gpu_names()
    gpu = f"; GPU: {', '.join(gpus)}" if gpus else ""
    return (
        f"{cpu.model} ({platform.machine()}, {cpu.flag_text()}; torch kernels {cpu.capability}), "
        f"{cpu.cores} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"Python {platform.python_version()}{gpu}"
    )
