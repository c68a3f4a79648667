"""A training run killed with SIGKILL resumes from its last checkpoint and ends byte-identical to one that was
never interrupted (a real `python -m stages.train` subprocess, killed for real)."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.conftest import easy_rows, prepare_stage_inputs, run_stage, stage_args, subprocess_env

PARAMS = {"max_length": 96, "batch_size": 8, "epochs": 3, "lr": 3e-3, "warmup_ratio": 0.05, "checkpoint_every": 5}
OUTPUTS = ("models/trained/model.safetensors", "metrics/train/metrics.json", "metrics/train/plots/metrics/loss.tsv")


def workdir(root, base):
    prepare_stage_inputs(root, base, easy_rows(160), train=PARAMS)
    return root


def test_resume_after_sigkill_is_byte_identical(tmp_path, tiny_base):
    reference = workdir(tmp_path / "ref", tiny_base)
    assert run_stage(reference, "train").returncode == 0

    work = workdir(tmp_path / "killed", tiny_base)
    proc = subprocess.Popen([sys.executable, "-m", "stages.train", *stage_args("train")], cwd=work,
                            env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(work.glob(".scratch/train/*/step-*.json")) and time.time() < deadline:  # its manifest: whole
        assert proc.poll() is None, "training finished before a checkpoint was seen"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "models/trained").exists()  # nothing half-written for DVC to cache

    resumed = run_stage(work, "train")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from the checkpoint at step" in resumed.stderr
    for name in OUTPUTS:
        assert (work / name).read_bytes() == (reference / name).read_bytes(), name
    assert not list(work.glob(".scratch/train/*/step-*"))  # cleaned up after success
