"""Data-parallel training for real: `python -m stages.train` with train.nproc_per_node=2 relaunches itself under
torchrun, two processes train the tiny model with DDP over gloo on CPU.

Two processes must run the same optimisation as one (same global batches, same steps), write their outputs once,
log once, stop together on an error or a dead worker, and resume after a kill. Each run is a real subprocess in a
temporary working directory (10-40 s on 2 shared cores, mostly imports); the file takes 1.5-3 minutes.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rewardkit.training.distributed import LOST_PEER
from rewardkit.training.launcher import ErrorsOnce
from tests.conftest import TrainingRun, easy_rows, live_curve, prepare_stage_inputs, watch_training

ROWS = easy_rows(96)
STEPS = 24  # 96 pairs / 8 per step x 2 epochs
TIMEOUT = 120  # seconds any run may take, failing or not: a hang fails the test, not the CI job
TRAINING_LINE = "training on 96 pairs"


class Run(TrainingRun):
    def resumed_from(self) -> int:
        found = re.findall(rf"resuming from the checkpoint at step (\d+)/{STEPS}", self.output)
        assert len(found) == 1, self.output  # said once, by rank 0
        return int(found[0])

    @property
    def seconds_after_kill(self) -> float | None:
        return self.ended - self.acted_at if self.acted_at else None


def train(cwd: Path, kill_at: int | None = None, kill: str = "") -> Run:
    """Run the train stage in `cwd`. With `kill_at`, SIGKILL once rank 0's progress bar has passed that step:
    kill="worker" kills rank 1 (as the OOM killer would), kill="group" the launcher's process group (as a
    preemption or `kill -9` of `dvc repro` would)."""
    def act(proc, workers) -> None:
        if kill == "worker":
            next(p for p in workers.values() if p.environ().get("RANK") == "1").kill()
        else:
            os.killpg(proc.pid, signal.SIGKILL)

    return Run(**vars(watch_training(cwd, STEPS, kill_at, act, TIMEOUT)))


def workdir(root: Path, base: Path, nproc: int) -> Path:
    prepare_stage_inputs(root, base, ROWS, train={"nproc_per_node": nproc, "batch_size": 8, "max_length": 64,
                                                  "epochs": 2, "lr": 1e-3, "warmup_ratio": 0.1,
                                                  "checkpoint_every": 4, "device": "cpu"})
    return root


def entries(root: Path) -> list[str]:
    """Every file and directory under root, hidden ones included."""
    return sorted(str(p.relative_to(root)) + "/" * p.is_dir() for p in root.rglob("*"))


def curve(root: Path) -> list[dict]:
    """The per-step files dvclive wrote (metrics/train/plots/metrics/*.tsv), name -> text."""
    return {p.name: p.read_text() for p in sorted((root / "metrics/train/plots/metrics").glob("*.tsv"))}


def model_sha256(root: Path) -> str:
    return hashlib.sha256((root / "models" / "trained" / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def base(tiny_base) -> Path:
    return tiny_base


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory) -> dict[int, tuple[Path, Run]]:
    """Uninterrupted runs with 1 and with 2 processes, started together: two standalone torchrun rendezvous on
    one machine each take a free port, so concurrent runs (or test sessions) do not collide."""
    dirs = {n: workdir(tmp_path_factory.mktemp(f"nproc{n}"), base, n) for n in (1, 2)}
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(dirs, pool.map(train, dirs.values())))
    for n, run in runs.items():
        assert run.returncode == 0, run.output
    return {n: (dirs[n], runs[n]) for n in dirs}


def test_two_processes_train_like_one(reference):
    (one_dir, one), (two_dir, two) = reference[1], reference[2]
    assert (one.workers, two.workers) == (0, 2)
    # the same global batch at every step: per-step losses agree to float noise (sums over two halves instead of
    # one batch), where another batch would differ in the second digit
    a, b = live_curve(one_dir), live_curve(two_dir)
    assert len(a) == len(b) == STEPS
    for x, y in zip(a, b):
        assert (x["step"], x["epoch"], x["lr"]) == (y["step"], y["epoch"], y["lr"])
        assert float(y["loss"]) == pytest.approx(float(x["loss"]), rel=1e-4)
    # outputs written once, by rank 0: exactly the files and directories of a single-process run, so no
    # temporary leftovers, no checkpoint and no torchrun log directory
    assert entries(two_dir) == entries(one_dir)
    assert "models/trained/model.safetensors" in entries(two_dir)
    # logs of rank 0 only: the same lines as one process (one progress bar, one "training on" line)
    assert two.output.count(TRAINING_LINE) == 1 and "on cpu x2" in two.output
    bars = [line for line in two.lines() if line.startswith("train:")]
    assert len(bars) == 1 and f"{STEPS}/{STEPS}" in bars[0]
    untimed = [re.sub(r" \[[^]]*\]$", "", line) for line in one.lines()]  # a bar's timings differ
    assert [re.sub(r" \[[^]]*\]$", "", line.replace(" x2", " x1")) for line in two.lines()] == untimed


def test_corrupt_data_stops_every_rank_with_one_error(base, tmp_path):
    work = workdir(tmp_path, base, 2)
    offsets = work / "data" / "tokens" / "train" / "offsets.npy"
    offsets.write_bytes(offsets.read_bytes()[:100])  # a truncated copy
    run = train(work)
    assert run.returncode == 2
    # both ranks hit it and say so; the user reads it once, without a traceback
    assert run.errors() == [run.errors()[0]]
    assert run.errors()[0].startswith("error: token store data/tokens/train is missing or damaged")
    assert "Traceback" not in run.output and TRAINING_LINE not in run.output
    assert run.workers == 2 and not (work / "models").exists()


def test_killed_runs_resume_to_the_same_model(base, reference, tmp_path):
    work = workdir(tmp_path, base, 2)
    # a worker dies (what the OOM killer does): the agent stops the other rank at once, the launcher names it
    first = train(work, kill_at=5, kill="worker")
    assert first.returncode == 128 + signal.SIGKILL and first.seconds_after_kill < 30
    summary = first.errors()[-1]
    assert summary.startswith("error: training process of rank 1 ") and "SIGKILL" in summary
    # rank 0 may notice the lost connection before the agent stops it: one line then, not a traceback
    assert set(first.errors()) <= {summary, f"error: {LOST_PEER}"} and len(set(first.errors())) == len(first.errors())
    assert "Traceback" not in first.output and not (work / "models").exists()

    # the whole job is killed (a preemption, `kill -9` of dvc's process group): the workers die with the launcher
    second = train(work, kill_at=13, kill="group")
    assert second.returncode == -signal.SIGKILL
    assert second.resumed_from() >= 4 and not (work / "models").exists()

    # the rerun resumes from the latest checkpoint and ends exactly where an uninterrupted run ends: gloo's sum over
    # two ranks, the data order and the saved optimizer, scheduler and RNG state are all deterministic
    third = train(work)
    assert third.returncode == 0, third.output
    assert third.resumed_from() >= 12
    ref_dir, _ = reference[2]
    assert model_sha256(work) == model_sha256(ref_dir)
    assert curve(work) == curve(ref_dir)
    assert (work / "metrics/train/metrics.json").read_text() == (ref_dir / "metrics/train/metrics.json").read_text()
    assert entries(work) == entries(ref_dir)


def test_the_launcher_shows_an_error_line_once_and_passes_progress_bars_on():
    """The launcher's stderr filter fed in awkward chunks, as two ranks' output arrives."""
    read_end, write_end = os.pipe()
    errors = ErrorsOnce()
    errors.real = write_end
    errors.feed(b"training on 8 pairs\n\rtrain:  50%|#")
    errors.feed(b"#   | 1/2")
    assert os.read(read_end, 1 << 16) == b"training on 8 pairs\n\rtrain:  50%|##   | 1/2"  # the bar goes on at once
    for chunk in (b"err", b"or: line 5 is bad\n",  # rank 0, right after its bar
                  b"error: line 5 is bad\n",  # rank 1
                  b"a warning about an error: kept\n", b"error: another one\n", b""):
        errors.feed(chunk)
    os.close(write_end)
    assert os.read(read_end, 1 << 16) == (b"\nerror: line 5 is bad\n"  # once, on a line of its own
                                          b"a warning about an error: kept\nerror: another one\n")
