"""What the GPU check's checks share: the run's settings and data (`Setup`), a table row (`Row`), in-process
training through the train stage's loop (`train`), and a child process with a time limit (`child`)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from bench import workloads
from rewardkit.config import TrainConfig
from rewardkit.modeling.model import RewardModel, load_base
from rewardkit.training.distributed import Ranks
from rewardkit.training.loop import optimize

ROOT = workloads.ROOT
SEED = 42


@dataclass
class Row:
    """One line of the table: `status` is "pass", "FAIL" or "skipped: why"; `figure` what was measured."""

    check: str
    status: str
    figure: str = ""
    tolerance: str = ""
    notes: str = ""
    data: dict = field(default_factory=dict)

    @staticmethod
    def judged(check: str, ok: bool, figure: str, tolerance: str, notes: str = "", **data) -> Row:
        return Row(check, "pass" if ok else "FAIL", figure, tolerance, notes, data)


@dataclass
class Setup:
    """The run: device, sizes, the model directory (random init, tokenizer trained on the bench data), the
    training pairs as a token store, held-out pairs to score, the output folder and the log every child writes."""

    device: torch.device
    quick: bool
    model: Path
    pairs: object
    held_out: object
    data: Path
    held_out_data: Path
    out: Path
    batch: int
    steps: int
    max_length: int

    @property
    def log(self) -> Path:
        return self.out / "gpu_check.log"


def base(setup: Setup) -> tuple[RewardModel, object]:
    """The base, its head initialised from SEED, on the device, and its tokenizer."""
    model, tokenizer = load_base(str(setup.model), "cls", SEED)
    return model.to(setup.device), tokenizer


def config(setup: Setup, **overrides) -> TrainConfig:
    """The check's training settings: the run's batch, one epoch of `setup.steps` steps, linear schedule with a
    warm-up, AdamW at 1e-4 (high enough that the weights move within a few steps), no periodic checkpoints."""
    settings = dict(max_length=setup.max_length, batch_size=setup.batch, epochs=1, max_steps=setup.steps, lr=1e-4,
                    warmup_ratio=0.1, checkpoint_every=0, device=setup.device.type, seed=SEED, precision="fp32")
    return TrainConfig(**{**settings, **overrides})


def train(setup: Setup, ckpt_dir: Path, on_step=None, **overrides) -> tuple[list[dict], RewardModel, object]:
    """(curve, trained model, tokenizer) of the train stage's loop over the run's pairs, in this process."""
    model, tokenizer = base(setup)
    cfg = config(setup, **overrides)
    curve = optimize(model, setup.pairs, cfg, setup.device, Ranks(), tokenizer.pad_token_id, ckpt_dir, on_step)
    return curve, model, tokenizer


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().double().cpu() - b.detach().double().cpu()).abs().max().item()


def state_difference(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """The largest absolute difference between two models' weights."""
    other = b.state_dict()
    return max(max_abs(t, other[name]) for name, t in a.state_dict().items() if t.is_floating_point())


def child(name: str, cmd: list[str], setup: Setup, timeout: float, env: dict | None = None) -> dict:
    """Run `cmd`; its output is appended to the log. Returns its last JSON line (or {}) plus ok/seconds/error."""
    start = time.perf_counter()
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {})}
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)
        stdout, out, code = proc.stdout, proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout, code = "", -1
        out = f"{_text(e.stdout)}{_text(e.stderr)}\ntimed out after {timeout:.0f} s"
    with open(setup.log, "a", encoding="utf-8") as f:
        f.write(f"\n===== {name}: {shlex.join(cmd)} (exit {code})\n{out}")
    result = next((r for r in map(_json, reversed(stdout.splitlines())) if r is not None), {})
    tail = [line for line in out.splitlines() if line.strip()][-1:] or ["no output"]
    return {**result, "ok": code == 0, "code": code, "seconds": time.perf_counter() - start,
            **({} if code == 0 else {"error": f"exit {code}: {tail[0][:200]}"})}


def python() -> list[str]:
    return [sys.executable]


def _json(line: str) -> dict | None:
    """The JSON object on `line`, if it is one (TRL also prints Python dicts)."""
    try:
        return json.loads(line) if line.startswith("{") else None
    except json.JSONDecodeError:
        return None


def _text(output) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")
