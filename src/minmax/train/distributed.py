"""One process or many: what the loop needs to know about torch.distributed.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without them (plain ``minmax
train``) this is a world of one and no process group is made, so the same code runs both ways.
The backend follows the device: NCCL on GPUs, gloo on CPU. Host-side decisions (stop now?
did a loss go non-finite?) travel over a separate gloo group, so asking them never waits on
the GPU.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn

from minmax.errors import UsageError


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    control: object | None = None  # gloo process group for host-side flags

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("train.device=cuda but no CUDA device is available: use auto or cpu")
        return torch.device("cuda", local_rank)
    if name == "cpu":
        return torch.device("cpu")
    raise UsageError(f"train.device must be auto, cpu or cuda, not '{name}'")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise UsageError(f"environment variable {name}='{value}' is not an integer") from None


def setup(device: str = "auto", timeout_s: float = 1800.0) -> Dist:
    """Join the process group torchrun describes (if any) and pick this rank's device."""
    rank, world = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = pick_device(device, local_rank)
    if world <= 1:
        return Dist(device=dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    timeout = timedelta(seconds=timeout_s)
    try:
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=timeout)
        control = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None
    except (RuntimeError, ValueError) as err:  # DistStoreError, DistNetworkError are these
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(
            f"rank {rank} of {world} could not join the process group at {where} within "
            f"{timeout_s:g} s ({first}): are all ranks started and the endpoint reachable?"
        ) from None
    return Dist(rank, world, local_rank, dev, control)


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()


def max_over_ranks(d: Dist, value: int) -> int:
    """The largest ``value`` any rank holds, on every rank: a gloo all-reduce of one CPU int,
    so every rank takes the same decision (stop now, and why) at the same step."""
    if not d.enabled:
        return value
    t = torch.tensor([value])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=d.control)
    return int(t.item())


def mean_over_ranks(d: Dist, t: Tensor) -> Tensor:
    """The average of ``t`` over ranks (``t`` itself in a world of one)."""
    if not d.enabled:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / d.world_size


def gather_states(d: Dist, state: Tensor) -> list[Tensor]:
    """Every rank's copy of a CPU uint8 state (an RNG state), in rank order."""
    if not d.enabled:
        return [state]
    out = [torch.empty_like(state) for _ in range(d.world_size)]
    dist.all_gather(out, state, group=d.control)
    return out


def broadcast_text(d: Dist, text: str) -> str:
    """Rank 0's ``text`` on every rank (a run folder's name, an error): UTF-8 bytes in a
    tensor, so nothing is unpickled."""
    if not d.enabled:
        return text
    data = torch.tensor(list(text.encode()) if d.is_main else [], dtype=torch.uint8)
    size = torch.tensor([len(data)])
    dist.broadcast(size, 0, group=d.control)
    if not d.is_main:
        data = torch.empty(int(size.item()), dtype=torch.uint8)
    dist.broadcast(data, 0, group=d.control)
    return bytes(data.tolist()).decode()


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier(group=d.control)


def wrap(module: nn.Module, d: Dist) -> nn.Module:
    """DDP around ``module`` in a world of many; the module itself in a world of one.

    Buffers are not broadcast: batch-norm statistics are synchronised by the norm layers
    themselves (``models.layers.BatchNorm2d``) and spectral-norm vectors follow the weights, so
    they agree on every rank without a broadcast per forward (which would also clash with
    spectral norm's in-place power iteration).
    """
    if not d.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [d.device.index] if d.device.type == "cuda" else None
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    return DistributedDataParallel(
        module, device_ids=ids, gradient_as_bucket_view=True, **{no_sync: False}
    )
