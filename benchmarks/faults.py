"""Fault injection on checkpoints: kills, corruption, a full disk, pickles posing as weights.

Usage: python benchmarks/faults.py [--kills 20] [--phase-kills 4] [--seed 0] [--fork]

1. Kills: ``minmax train`` (toy ring run, a checkpoint every 10 steps) is SIGKILLed
   ``--kills`` times at seeded random moments (a third or more mid checkpoint write) and
   continued each time as a user would (``--resume``; the same ``--out`` while the folder
   has no config.yaml) (tests/train/test_crash.py's harness; fresh ``python -m minmax``
   processes unless ``--fork``). Every checkpoint each continued process writes is
   compared, bit for bit and tensor by tensor (weights, optimizer moments, RNG states), with
   the uninterrupted run's checkpoint at the same images seen; so is the end state.
   Then phase by phase, ``--phase-kills`` kills each, one run per phase (the harness's
   ``PHASES``: the process kills itself as it is about to create a given file): before the
   run folder or its config.yaml exists, after config.yaml, during the first checkpoint
   write, between checkpoints, during the final report (its plots on).
2. Corruption: the newest checkpoint of that run is damaged in one way at a time (each
   file flipped, truncated or deleted; the manifest deleted or garbled; a stray file; the
   folder left as staging); ``find_checkpoint`` must skip it for the one before.
3. A full disk: ENOSPC raised at each file write of a checkpoint in turn; the previous
   checkpoint must stay findable, no staging folder may remain, the error must say so.
4. Malicious weights: pickles (one that would run code) saved as ``G.safetensors``, with
   the manifest forged to match or not; loading must refuse them and run nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import importlib.util
import io
import json
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from minmax.errors import UsageError
from minmax.machine import machine_summary
from minmax.models import rebuild
from minmax.train import checkpoint
from minmax.train.checkpoint import find_checkpoint, load_module, read_spec, verify_checkpoint

HERE = Path(__file__).resolve().parent
KEEP_ALL = "train.keep_checkpoints=100000"  # the reference keeps every checkpoint to compare


def _harness():
    """tests/train/test_crash.py, imported by path (tests are not a package)."""
    spec = importlib.util.spec_from_file_location(
        "crash", HERE.parent / "tests/train/test_crash.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["crash"] = module
    spec.loader.exec_module(module)
    return module


def kills(work: Path, n_kills: int, seed: int, fork: bool) -> dict[str, int]:
    crash = _harness()
    launch = crash.Forked if fork else crash.Spawned
    args = crash.toy_args(n_checkpoints=max(12, 3 * n_kills))
    reference, killed = work / "straight", work / "killed"
    with contextlib.redirect_stdout(io.StringIO()):  # its summary, when run in this process
        crash.straight_run(reference, [*args, KEEP_ALL], None if fork else launch)
    compare, rounds = _comparer(reference, killed)
    report = crash.kill_and_resume(killed, args, n_kills, seed, launch, after_round=compare)
    final = crash.differences(reference, killed) == []
    return {
        "injected": report.kills,
        "survived": report.kills if final else 0,
        "mid_write": report.mid_write,
        "fresh_starts": report.fresh_starts,
        "launches": report.launches,
        "identical": rounds["identical"] + final,
        "compared": rounds["resumed"] + 1,
    }


def phase_kills(work: Path, per_phase: int, fork: bool) -> dict[str, dict[str, int]]:
    """``per_phase`` kills at each phase of its own run (cycling through the phase's kill
    points), each continued as a user would, against one uninterrupted run."""
    crash = _harness()
    launch = crash.Forked if fork else crash.Spawned
    args = [*crash.toy_args(n_checkpoints=per_phase + 2), *crash.REPORT_ARGS]
    reference = work / "phases-straight"
    with contextlib.redirect_stdout(io.StringIO()):
        crash.straight_run(reference, [*args, KEEP_ALL], None if fork else launch)
    results = {}
    for i, (label, points) in enumerate(crash.PHASES.items()):
        killed = work / f"phase-{i}"
        phases = [points[k % len(points)] for k in range(per_phase)]
        compare, rounds = _comparer(reference, killed)
        report = crash.kill_and_resume(killed, args, per_phase, 0, launch, compare, phases)
        same = crash.differences(reference, killed) == [] and (
            rounds["identical"] == rounds["resumed"]
        )
        results[label] = {
            "injected": report.kills,
            "survived": report.kills if same else 0,
            "compared": rounds["resumed"] + 1,
            "launches": report.launches,
            "points": len(points),
        }
    return results


def _comparer(reference: Path, killed: Path) -> tuple[Callable[[], None], dict[str, int]]:
    """An ``after_round`` that compares the checkpoints each continued launch wrote with the
    reference's at the same images seen; and its tally."""
    seen: set[str] = set()
    rounds = {"identical": 0, "resumed": 0, "launches": 0}

    def compare() -> None:
        new = {p.name for p in (killed / "checkpoint").glob("ckpt-????????????")} - seen
        rounds["launches"] += 1
        seen.update(new)
        if not new or rounds["launches"] == 1:  # nothing written, or not a continued launch
            return
        same = all(_identical(reference / "checkpoint" / n, killed / "checkpoint" / n) for n in new)
        rounds["resumed"] += 1
        rounds["identical"] += same

    return compare, rounds


def _identical(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    for path in sorted(a.glob("*.safetensors")):
        x, y = load_file(str(path)), load_file(str(b / path.name))
        if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
            return False
    return True


def _damages(names: list[str]) -> dict[str, Callable[[Path], None]]:
    def flip(name: str) -> Callable[[Path], None]:
        def damage(folder: Path) -> None:
            data = bytearray((folder / name).read_bytes())
            data[len(data) // 2] ^= 0x10
            (folder / name).write_bytes(bytes(data))

        return damage

    damages = {}
    for name in names:
        damages[f"flip a bit of {name}"] = flip(name)
        damages[f"truncate {name}"] = lambda f, n=name: (f / n).write_bytes(b"trunc")
        damages[f"delete {name}"] = lambda f, n=name: (f / n).unlink()
    damages["garble manifest.json"] = lambda f: (f / "manifest.json").write_text("{")
    damages["a stray file"] = lambda f: (f / "stray.bin").write_bytes(b"?")
    damages["left as staging"] = lambda f: f.rename(f.with_name(f.name + ".tmp"))
    return damages


def corruption(run: Path, work: Path) -> dict[str, int]:
    newest = find_checkpoint(run)
    names = sorted(p.name for p in newest.iterdir())
    tried = skipped = 0
    for what, damage in _damages(names).items():
        copy = work / f"corrupt-{tried}"
        shutil.copytree(run / "checkpoint", copy / "checkpoint")
        damage(copy / "checkpoint" / newest.name)
        tried += 1
        with contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                chosen = find_checkpoint(copy)
            except UsageError:
                chosen = None
        named = [line for line in err.getvalue().splitlines() if newest.name in line]
        ok = chosen is not None and chosen.name < newest.name and verify_checkpoint(chosen) is None
        ok = ok and len(named) == 1  # said so, on one line
        skipped += ok
        if not ok:
            print(f"NOT SKIPPED: {what} -> {chosen}", file=sys.stderr)
    return {"skipped": skipped, "tried": tried}


def disk_full(run: Path, work: Path) -> dict[str, int]:
    source = find_checkpoint(run)
    G = load_module(source, "G", rebuild(read_spec(source), "G"))
    opt = torch.optim.Adam(G.parameters())
    tried = recovered = 0
    real_write = checkpoint._write_file
    for failing in range(1, 8):  # networks, G, training, state, fingerprint?, manifest...
        folder = work / f"full-{failing}"
        state = {"step": 1, "images_seen": 64}
        checkpoint.save_checkpoint(folder, {"G": G}, {}, {"G": opt}, {}, state)
        calls = []

        def full(path: Path, data: bytes, failing: int = failing, calls: list = calls) -> None:
            calls.append(path)
            if len(calls) == failing:
                path.with_name(path.name + ".part").write_bytes(data[: len(data) // 3])
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            real_write(path, data)

        checkpoint._write_file = full
        try:
            checkpoint.save_checkpoint(folder, {"G": G}, {}, {"G": opt}, {}, {"images_seen": 128})
            message = ""
        except UsageError as err:
            message = str(err)
        finally:
            checkpoint._write_file = real_write
        if len(calls) < failing:  # fewer files than this: every position tried
            break
        tried += 1
        left = sorted(p.name for p in (folder / "checkpoint").iterdir())
        recovered += (
            "the disk is full" in message
            and left == ["ckpt-000000000064"]
            and find_checkpoint(folder).name == "ckpt-000000000064"
        )
    return {"recovered": recovered, "tried": tried}


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def malicious(run: Path, work: Path) -> dict[str, int]:
    source = find_checkpoint(run)
    marker = work / "code-ran"

    def npy(path: Path) -> None:
        with open(path, "wb") as f:  # np.save would add ".npy" to a name
            np.save(f, np.array([_Payload(marker)], dtype=object))

    writers = {
        "torch.save zip of pickles": lambda p: torch.save({"x": _Payload(marker)}, p),
        "raw pickle": lambda p: p.write_bytes(pickle.dumps(_Payload(marker))),
        "numpy object array": npy,
    }
    tried = refused = 0
    for what, write in writers.items():
        for forge_manifest in (False, True):
            folder = work / f"evil-{tried}" / "checkpoint" / source.name
            shutil.copytree(source, folder)
            write(folder / "G.safetensors")
            if forge_manifest:  # hashes recomputed: only the loader stands in the way
                manifest = json.loads((folder / "manifest.json").read_text())
                data = (folder / "G.safetensors").read_bytes()
                sha = hashlib.sha256(data).hexdigest()
                manifest["files"]["G.safetensors"] = {"bytes": len(data), "sha256": sha}
                (folder / "manifest.json").write_text(json.dumps(manifest))
            tried += 1
            try:
                with contextlib.redirect_stderr(io.StringIO()):
                    chosen = find_checkpoint(folder.parent.parent)
                load_module(chosen, "G", rebuild(read_spec(chosen), "G"))
                ok = False
            except UsageError:
                ok = True
            ok = ok and not marker.exists()
            refused += ok
            if not ok:
                print(f"NOT REFUSED: {what} (forged manifest: {forge_manifest})", file=sys.stderr)
    return {"refused": refused, "tried": tried}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--phase-kills", type=int, default=4, help="kills at each phase")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fork", action="store_true", help="fork, not fresh interpreters")
    args = parser.parse_args()
    print(f"# {machine_summary()}", flush=True)
    torch.set_num_threads(1)
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        k = kills(work, args.kills, args.seed, args.fork)
        p = phase_kills(work, args.phase_kills, args.fork)
        run = work / "straight"
        c = corruption(run, work)
        d = disk_full(run, work)
        m = malicious(run, work)
    how = "forked" if args.fork else "fresh `python -m minmax train`"
    launches = k["launches"] + sum(phase["launches"] for phase in p.values())
    print(f"\nfaults.py: seed {args.seed}, {launches} launches ({how}), "
          f"{time.monotonic() - start:.0f} s")  # fmt: skip
    rows = [
        ("kills survived / injected", k["survived"], k["injected"],
         f"{k['mid_write']} mid checkpoint write, {k['fresh_starts']} before the first one"),
        ("resumed runs bit-identical / total", k["identical"], k["compared"],
         "every checkpoint a continued process wrote, and the end state"),
        *((f"kills {label}", phase["survived"], phase["injected"],
           f"{phase['points']} kill point(s); {phase['compared']} bit-for-bit comparisons "
           "(each continued launch's new checkpoints, the end state)")
          for label, phase in p.items()),
        ("corrupt checkpoints skipped / tried", c["skipped"], c["tried"],
         "flipped bit, truncated or deleted file, bad manifest, stray file, staging"),
        ("full-disk writes recovered / tried", d["recovered"], d["tried"],
         "ENOSPC at each file write in turn"),
        ("malicious checkpoints refused / tried", m["refused"], m["tried"],
         "pickles as G.safetensors, manifest forged or not; no code ran"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for name, good, total, note in rows:
        print(f"{name:<{width}}  {good:>3} / {total:<3}  {note}")
    ok = all(good == total for _, good, total, _ in rows)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
