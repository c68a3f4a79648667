"""Check 4: kill and resume on the device (the case of #23's defect 1: a checkpoint written on a GPU must load and
restore its RNG state there). Three runs of the train stage's loop over the same batches, a checkpoint every
`EVERY` steps: uninterrupted; SIGKILLed right after the checkpoint of step EVERY (a child process, killed by its
own hand at a known point) and resumed here; SIGTERMed (the loop finishes the step, writes a checkpoint, stops)
and resumed here. Each resumed run must end with the uninterrupted run's losses and weights: exactly on the CPU;
on CUDA within 1e-5 with deterministic algorithms on (warn-only: an op without a deterministic kernel, as
embedding backward's atomics, may still differ in the last bits).

    python -m bench.gpucheck.resume MODEL STORE CKPT_DIR DEVICE BATCH STEPS MAX_LENGTH   (the SIGKILL child)
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

import torch

from bench.gpucheck.common import Row, Setup, child, python, state_difference, train
from rewardkit.encoding.store import TokenStore
from rewardkit.training.preemption import Stopped

EVERY = 2  # the checkpoint interval, and the step after whose checkpoint each run is stopped


def tolerance(device: torch.device) -> float:
    return 0.0 if device.type == "cpu" else 1e-5


def kill_after(step: int, signum: int):
    """An on_step callback that sends this process `signum` at the end of step `step` (before its checkpoint)."""
    def on_step(record: dict) -> None:
        if record["step"] == step:
            os.kill(os.getpid(), signum)
    return on_step


def resumed_difference(setup: Setup, reference: tuple, ckpt: Path) -> tuple[float, float]:
    """(largest loss and weight differences from the reference) of the run resumed from `ckpt`."""
    curve, model, _ = train(setup, ckpt, checkpoint_every=EVERY)
    losses, weights = reference
    loss_gap = max(abs(a["loss"] - b) for a, b in zip(curve, losses)) if len(curve) == len(losses) else float("inf")
    return loss_gap, state_difference(model, weights)


def run(setup: Setup, timeout: float) -> Row:
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with tempfile.TemporaryDirectory() as work:
            curve, model, _ = train(setup, Path(work) / "whole", checkpoint_every=EVERY)
            reference = ([r["loss"] for r in curve], model)
            killed = Path(work) / "killed"
            proc = child("resume: SIGKILLed run", [*python(), "-m", "bench.gpucheck.resume", str(setup.model),
                                                   str(setup.pairs.dir), str(killed), str(setup.device),
                                                   str(setup.batch), str(setup.steps), str(setup.max_length)],
                         setup, timeout)
            if proc["code"] != -signal.SIGKILL:
                return Row("kill -9 / SIGTERM and resume", "FAIL", notes=f"the child was not killed: {proc}")
            gaps = {"SIGKILL": resumed_difference(setup, reference, killed)}
            stopped = Path(work) / "stopped"
            try:
                train(setup, stopped, kill_after(EVERY + 1, signal.SIGTERM), checkpoint_every=EVERY)
                return Row("kill -9 / SIGTERM and resume", "FAIL", notes="SIGTERM did not stop the run")
            except Stopped:
                gaps["SIGTERM"] = resumed_difference(setup, reference, stopped)
    finally:
        torch.use_deterministic_algorithms(False)
    tol = tolerance(setup.device)
    ok = all(loss <= tol and weights <= tol for loss, weights in gaps.values())
    figure = "; ".join(f"{k}: losses {loss:.1e}, weights {w:.1e}" for k, (loss, w) in gaps.items())
    return Row.judged("kill -9 / SIGTERM and resume", ok, f"max |diff| from the uninterrupted run: {figure}",
                      "exact (CPU)" if tol == 0 else f"<= {tol:g}", f"{setup.steps} steps, stopped after step "
                      f"{EVERY} (SIGKILL) and {EVERY + 1} (SIGTERM)", gaps=gaps)


def killed_child(argv: list[str]) -> None:
    """Train with a checkpoint every EVERY steps and SIGKILL this process at the end of step EVERY + 1: its
    checkpoint of step EVERY is on disk, the step after it is lost."""
    model, store, ckpt, device, batch, steps, max_length = argv
    setup = Setup(torch.device(device), True, Path(model), TokenStore(Path(store)), None, Path(), Path(), Path(),
                  int(batch), int(steps), int(max_length))
    torch.use_deterministic_algorithms(True, warn_only=True)
    train(setup, Path(ckpt), kill_after(EVERY + 1, signal.SIGKILL), checkpoint_every=EVERY)
    sys.exit("the run was not killed")


if __name__ == "__main__":
    killed_child(sys.argv[1:])
