"""Resumable training state of a sharded (train.strategy=fsdp) run, with `torch.distributed.checkpoint` (DCP):
each rank writes its own shards of the weights and AdamW state, no rank ever holds the whole.

A checkpoint is the directory `step-<step>.dcp/` (DCP's `.metadata` and one `__<rank>_0.distcp` per rank, plus
`extra.pt` from rank 0: scheduler, RNG, curve, the process count) and beside it `step-<step>.json`, its manifest
(every file's size and sha256) written by rank 0 after every rank has finished and the directory has been renamed
from its temporary name. The rules are those of rewardkit.training.checkpoint: the last KEEP are kept; on resume
rank 0 takes the newest one whose files match their manifest, sets damaged ones aside as `*.damaged` with one line
each, falls back to the one before or a fresh start; the others load the one it picked (checkpoint.load_latest,
set_aside and remove serve both kinds). DCP reshards on load, so a run resumes with another process count (the run
key leaves nproc_per_node out for fsdp).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from rewardkit.io import file_sha256, write_json
from rewardkit.training import distributed
from rewardkit.training.checkpoint import KEEP, load_latest, manifest_file, rng_state
from rewardkit.training.distributed import Ranks

NAME = re.compile(r"step-(\d+)\.(dcp|json)")
EXTRA = "extra.pt"
EXTRA_KEYS = {"step", "scheduler", "rng", "curve", "world"}


def checkpoint_dir(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}.dcp"


def steps_on_disk(directory: Path) -> list[int]:
    """Steps with a checkpoint directory or a manifest in `directory` (damaged ones excluded), newest first."""
    if not directory.is_dir():
        return []
    return sorted({int(m.group(1)) for p in directory.iterdir() if (m := NAME.fullmatch(p.name))}, reverse=True)


def save(directory: Path, ranks: Ranks, *, step: int, model, optimizer, scheduler, curve: list[dict]) -> None:
    """Every rank writes its shards (a collective); rank 0 adds the rest of the state, renames the directory into
    place, writes the manifest and deletes checkpoints beyond the last KEEP."""
    final = checkpoint_dir(directory, step)
    tmp = final.with_name(final.name + ".tmp")
    if ranks.is_main:
        shutil.rmtree(tmp, ignore_errors=True)  # a save killed half-way
        tmp.mkdir(parents=True)
    distributed.barrier(ranks)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=tmp)
    if ranks.is_main:
        torch.save({"step": step, "scheduler": scheduler.state_dict(), "rng": rng_state(), "curve": curve,
                    "world": ranks.world}, tmp / EXTRA)
    distributed.barrier(ranks)  # every rank's shards are on disk
    if ranks.is_main:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        files = {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in sorted(final.iterdir())}
        write_json(manifest_file(directory, step), {"dir": final.name, "step": step, "files": files})
        for old in steps_on_disk(directory)[KEEP:]:
            shutil.rmtree(checkpoint_dir(directory, old), ignore_errors=True)
            manifest_file(directory, old).unlink(missing_ok=True)
    distributed.barrier(ranks)


def problem(directory: Path, step: int) -> str | None:
    """Why the checkpoint of `step` cannot be trusted (None when every file matches its manifest)."""
    path, manifest = checkpoint_dir(directory, step), manifest_file(directory, step)
    if not manifest.is_file():
        return "it has no manifest: its save did not finish"
    try:
        files = {name: (int(f["size"]), str(f["sha256"]))
                 for name, f in json.loads(manifest.read_text(encoding="utf-8"))["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        return f"its manifest {manifest.name} is unreadable ({type(e).__name__})"
    if not path.is_dir():
        return "the directory is missing (only its manifest is there)"
    if EXTRA not in files or ".metadata" not in files:
        return "its manifest lists no DCP metadata or no training state"
    for name, (size, sha256) in files.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes where its manifest says {size}: truncated or overwritten"
        if file_sha256(file) != sha256:
            return f"the sha256 of {name} differs from its manifest: bytes were changed"
    return None


def read_extra(directory: Path, step: int) -> tuple[dict | None, str | None]:
    """(the non-tensor state, None) of a good checkpoint of `step`, else (None, why it is not)."""
    why = problem(directory, step)
    if why is not None:
        return None, why
    try:
        extra = torch.load(checkpoint_dir(directory, step) / EXTRA, map_location="cpu", weights_only=True)
    except Exception as e:  # whatever stops it loading makes it unusable; it is reported, not hidden
        return None, f"torch.load failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not isinstance(extra, dict) or not EXTRA_KEYS <= extra.keys() or extra["step"] != step:
        return None, "it does not hold the training state of its step"
    return extra, None


def resume(directory: Path, model, optimizer, ranks: Ranks) -> dict | None:
    """Load the newest good checkpoint into the sharded `model` and `optimizer` on every rank (DCP reads each rank's
    part, resharding when the process count changed); returns its non-tensor state (step, scheduler, rng, curve,
    world), None for a fresh start."""
    extra = load_latest(directory, read_extra, checkpoint_dir, steps_on_disk) if ranks.is_main else None
    picked = torch.tensor([extra["step"] if extra is not None else 0], dtype=torch.int64)
    step = int(distributed.all_reduce(picked, ranks, dist.ReduceOp.MAX).item())
    if not step:
        return None
    if not ranks.is_main:
        extra, _ = read_extra(directory, step)
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=checkpoint_dir(directory, step))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    return extra
