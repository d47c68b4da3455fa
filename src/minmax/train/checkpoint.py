"""Checkpoints: tensors in safetensors, metadata in JSON, swapped in atomically.

Layout of ``RUN_DIR/checkpoint/``::

    networks.json          {"arch", "G": kwargs, "D": kwargs}: rebuilds the modules by name
    G.safetensors, D.safetensors, G_ema.safetensors
    training.safetensors   optimizer moments and RNG states
    state.json             step, images seen, optimizer hyper-parameters; written last

A new checkpoint is written to a temporary folder and renamed into place, so a crash leaves
either the old checkpoint or the new one, never a mixture.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from minmax.errors import UsageError

CHECKPOINT = "checkpoint"


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _module_tensors(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}


def _optimizer_flat(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Split an optimizer state_dict into tensors (safetensors) and the rest (JSON)."""
    state = opt.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            if isinstance(value, Tensor):
                tensors[f"{name}/{index}/{key}"] = value.detach().contiguous().clone()
            else:
                scalars[f"{index}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_unflat(name: str, tensors: dict[str, Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(f"{name}/"):
            _, index, slot = key.split("/", 2)
            state.setdefault(int(index), {})[slot] = value
    for key, value in meta["scalars"].items():
        index, slot = key.split("/", 1)
        state.setdefault(int(index), {})[slot] = value
    groups = [
        {**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    run_dir: Path,
    networks: dict[str, nn.Module],
    spec: dict,
    optimizers: dict[str, torch.optim.Optimizer],
    rng: dict[str, Tensor],
    state: dict[str, Any],
) -> Path:
    """Write a complete checkpoint and swap it in for the previous one."""
    final = run_dir / CHECKPOINT
    tmp = run_dir / f"{CHECKPOINT}.tmp"
    old = run_dir / f"{CHECKPOINT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_json(tmp / "networks.json", spec)
    for name, module in networks.items():
        save_file(_module_tensors(module), str(tmp / f"{name}.safetensors"))
    tensors: dict[str, Tensor] = {f"rng/{k}": v.contiguous().clone() for k, v in rng.items()}
    opt_meta = {}
    for name, opt in optimizers.items():
        flat, opt_meta[name] = _optimizer_flat(name, opt)
        tensors.update(flat)
    save_file(tensors, str(tmp / "training.safetensors"))
    write_json(tmp / "state.json", {**state, "optimizers": opt_meta})
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(run_dir: Path) -> Path:
    """The run's complete checkpoint folder (falling back to one left mid-swap)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        folder = Path(run_dir) / name
        if (folder / "state.json").is_file():
            return folder
    raise UsageError(f"no checkpoint in '{run_dir}': give a run folder written by 'minmax train'")


def read_spec(folder: Path) -> dict:
    return json.loads((folder / "networks.json").read_text())


def load_module(folder: Path, name: str, module: nn.Module) -> nn.Module:
    """Load ``name``.safetensors into ``module``; shape mismatches become UsageErrors."""
    path = folder / f"{name}.safetensors"
    try:
        tensors = load_file(str(path))
    except (FileNotFoundError, SafetensorError) as err:
        raise UsageError(f"cannot read '{path}': {err}") from None
    try:
        module.load_state_dict(tensors)
    except RuntimeError as err:
        first = str(err).splitlines()[1:2] or [str(err)]
        raise UsageError(
            f"'{path}' does not match the network it is loaded into ({first[0].strip()}): "
            "was it written by another architecture or config?"
        ) from None
    return module


def load_training(
    folder: Path, optimizers: dict[str, torch.optim.Optimizer]
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Restore optimizer states; return (state.json, RNG states)."""
    state = json.loads((folder / "state.json").read_text())
    tensors = load_file(str(folder / "training.safetensors"))
    for name, opt in optimizers.items():
        opt.load_state_dict(_optimizer_unflat(name, tensors, state["optimizers"][name]))
    rng = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("rng/")}
    return state, rng
