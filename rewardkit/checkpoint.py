"""Resumable training state in a git-ignored scratch directory keyed by the stage's inputs.

The key hashes the training data and the `model` and `train` params that change the result, so a checkpoint
from other inputs is never picked up. Files are written to a temporary name and renamed (atomic); loading uses
`torch.load(weights_only=True)`. The directory is removed once the stage has written its outputs.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import shutil
from pathlib import Path

import torch

from rewardkit.io import atomic_path

NOT_IN_KEY = {"checkpoint_every"}  # params that do not change what is computed
FILE = "checkpoint.pt"


def run_key(data_sha256: str, *configs) -> str:
    fields = {}
    for cfg in configs:
        fields[cfg.section] = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_IN_KEY}
    blob = json.dumps({"data": data_sha256, **fields}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(directory: Path, *, step: int, model, optimizer, scheduler, curve: list[dict]) -> None:
    """Everything needed to continue exactly: weights, optimizer and scheduler state, RNG, data position."""
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": rng_state(), "curve": curve}
    with atomic_path(directory / FILE) as tmp:
        torch.save(state, tmp)


def load(directory: Path, device: torch.device) -> dict | None:
    path = directory / FILE
    if not path.is_file():
        return None
    return torch.load(path, map_location=device, weights_only=True)


def remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
