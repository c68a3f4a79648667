"""Resumable training state in a git-ignored scratch directory keyed by what computes the result
(`rewardkit.training.run_key`), so a checkpoint of other inputs or other code is never picked up.

Each checkpoint is `step-<step>.pt` (`torch.save`, loaded back with `weights_only=True`) and beside it
`step-<step>.json`, its manifest (size and sha256), written after it; both go to a temporary name first and are
renamed. The last two are kept. On resume the newest one whose bytes match its manifest and that loads is used;
a damaged one (truncated, bytes changed, no manifest, unloadable) is reported in one line and renamed to
`*.damaged` (kept for a post-mortem), and the one before it, or a fresh start, takes its place. Running out of
memory while loading says nothing about the file: it stops the run with one line and leaves the checkpoint be.
The directory is removed once the stage has written its outputs (the damaged files stay).

Checkpoints are read to the CPU whatever device trains: the RNG states must be CPU byte tensors, and
`load_state_dict` moves weights and optimizer state to the parameters' device itself.
"""
from __future__ import annotations

import json
import random
import re
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from rewardkit.errors import UserError
from rewardkit.io import atomic_path, file_sha256, native_os_errors, write_json
from rewardkit.modeling.devices import out_of_memory
from rewardkit.training import distributed
from rewardkit.training.distributed import Ranks

KEEP = 2  # checkpoints kept: the newest, and one to fall back to if the newest turns out damaged
NAME = re.compile(r"step-(\d+)\.(pt|json)")
DAMAGED = ".damaged"
STATE_KEYS = {"step", "model", "optimizer", "scheduler", "rng", "curve"}


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():  # resumed on fewer GPUs: the ones there are
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def checkpoint_file(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}.pt"


def manifest_file(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}.json"


def steps_on_disk(directory: Path) -> list[int]:
    """Steps that have a checkpoint or a manifest in `directory` (damaged ones excluded), newest first."""
    if not directory.is_dir():
        return []
    found = {int(m.group(1)) for p in directory.iterdir() if (m := NAME.fullmatch(p.name))}
    return sorted(found, reverse=True)


def save(directory: Path, *, step: int, model, optimizer, scheduler, curve: list[dict]) -> None:
    """Everything needed to continue exactly: weights, optimizer and scheduler state, RNG, data position. Then the
    manifest, then older checkpoints beyond the last KEEP are deleted."""
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng_state(), "curve": curve}
    path = checkpoint_file(directory, step)
    # torch.save to a Python file: a full disk surfaces as its OSError, not as a RuntimeError of the zip writer
    with atomic_path(path) as tmp, native_os_errors(path), open(tmp, "wb") as f:
        torch.save(state, f)
    write_json(manifest_file(directory, step), {"file": path.name, "step": step, "size": path.stat().st_size,
                                                "sha256": file_sha256(path)})
    for old in steps_on_disk(directory)[KEEP:]:
        checkpoint_file(directory, old).unlink(missing_ok=True)
        manifest_file(directory, old).unlink(missing_ok=True)


def problem(directory: Path, step: int) -> str | None:
    """Why the checkpoint of `step` cannot be trusted (None when its bytes match its manifest)."""
    path, manifest = checkpoint_file(directory, step), manifest_file(directory, step)
    if not manifest.is_file():
        return "it has no manifest: its save did not finish"
    try:
        expected = json.loads(manifest.read_text(encoding="utf-8"))
        size, sha256 = int(expected["size"]), str(expected["sha256"])
    except (ValueError, KeyError, TypeError) as e:
        return f"its manifest {manifest.name} is unreadable ({type(e).__name__})"
    if not path.is_file():
        return "the file is missing (only its manifest is there)"
    if path.stat().st_size != size:
        return f"{path.stat().st_size} bytes where its manifest says {size}: truncated or overwritten"
    if file_sha256(path) != sha256:
        return "its sha256 differs from its manifest: bytes were changed"
    return None


def read(directory: Path, step: int) -> tuple[dict | None, str | None]:
    """(state, None) for a good checkpoint of `step`, on the CPU, else (None, why it is not). Out of memory is not
    the file's fault: a UserError, the file left in place. An OSError (permissions, I/O) propagates as such."""
    why = problem(directory, step)
    if why is not None:
        return None, why
    path = checkpoint_file(directory, step)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as e:  # whatever else stops it loading makes it unusable; it is reported, not hidden
        first_line = str(e).splitlines()[0] if str(e) else ""
        if out_of_memory(e):
            raise UserError(f"out of memory loading checkpoint {path} ({type(e).__name__}: {first_line}); it is "
                            "left in place: free memory (or use a machine with more) and rerun to resume") from None
        return None, f"torch.load failed: {type(e).__name__}: {first_line}"
    if not isinstance(state, dict) or not STATE_KEYS <= state.keys() or state["step"] != step:
        return None, "it does not hold the training state of its step"
    return state, None


def set_aside(directory: Path, step: int, data=checkpoint_file) -> Path:
    """Rename the checkpoint of `step` (`data(directory, step)`: its file, or a sharded one's directory) and its
    manifest to *.damaged (kept for a post-mortem, never loaded)."""
    for path in (data(directory, step), manifest_file(directory, step)):
        if path.exists():
            path.replace(path.with_name(path.name + DAMAGED))
    return data(directory, step).with_name(data(directory, step).name + DAMAGED)


def load_latest(directory: Path, read=read, data=checkpoint_file, steps=steps_on_disk) -> dict | None:
    """The newest good checkpoint in `directory` (None: start from scratch). Each damaged one on the way is set
    aside and reported in one line on stderr, saying what is used instead. `read`, `data`, `steps`: how a
    checkpoint is read and where it is (rewardkit.training.sharded_checkpoint passes its own)."""
    damaged = []
    state = None
    for step in steps(directory):
        state, why = read(directory, step)
        if state is not None:
            break
        damaged.append((data(directory, step), why, set_aside(directory, step, data)))
    instead = f"resuming from the one of step {state['step']}" if state is not None else "training from scratch"
    for path, why, aside in damaged:
        print(f"warning: checkpoint {path} is damaged ({why}); moved it aside to {aside.name}, {instead}",
              file=sys.stderr)
    return state


def resume(directory: Path, ranks: Ranks) -> dict | None:
    """The state to resume from, the same on every rank: rank 0 picks the newest good checkpoint (setting damaged
    ones aside), the others load the one it picked. A rank that cannot read that one gets None, which the step
    check after this call reports (on several nodes `directory` must be on a shared filesystem)."""
    state = load_latest(directory) if ranks.is_main else None
    picked = torch.tensor([state["step"] if state is not None else 0], dtype=torch.int64)
    step = int(distributed.all_reduce(picked, ranks, dist.ReduceOp.MAX).item())  # rank 0's: the others send 0
    if not ranks.is_main and step:
        state, _ = read(directory, step)
    return state


def remove(directory: Path) -> None:
    """Delete the checkpoints of a finished run; damaged ones stay (the directory too, then) for a post-mortem."""
    if not directory.is_dir():
        return
    for path in directory.iterdir():
        if not path.name.endswith(DAMAGED):
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)  # a sharded one is a directory
    if not any(directory.iterdir()):
        directory.rmdir()
