"""Faults injected for real: damaged checkpoints and model files, a full and a read-only file system, SIGTERM to a
training run (1 process, and 2 gloo processes under torchrun), a training module edited between runs.

Each ends in one line (`error: ...` or `warning: ...`), never a traceback; nothing half-written is left; a rerun
after an interruption or with a damaged checkpoint ends byte-identical to a run that was never interrupted.
Runs are real subprocesses on the tiny base (10-30 s each on 2 shared cores, mostly imports); the file mounts
tmpfs file systems, which needs root (those tests skip without it).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import (
    REPO_ROOT,
    TrainingRun,
    easy_rows,
    prepare_stage_inputs,
    run_stage,
    stage_args,
    watch_training,
    write_jsonl,
    write_params,
)

STEPS = 48  # 64 pairs / 4 per step x 3 epochs
PARAMS = {"batch_size": 4, "max_length": 64, "epochs": 3, "lr": 1e-3, "warmup_ratio": 0.1, "checkpoint_every": 4,
          "device": "cpu"}
STOP_AT = 5  # the signal goes out once the bar shows this step: after the periodic checkpoint of step 4
TRAIN = dict(zip(stage_args("train")[::2], stage_args("train")[1::2]))  # --flag: path, as dvc.yaml gives them
MODEL = TRAIN["--model"]
OUTPUTS = (f"{MODEL}/model.safetensors", f"{TRAIN['--live']}/metrics.json", f"{TRAIN['--live']}/plots/metrics/loss.tsv")
TIMEOUT = 180  # seconds any run may take: a hang fails the test, not the CI job
STOPPED = re.compile(r"error: stopped by (SIG\w+) after step (\d+)/%d; its checkpoint is in \.scratch/train/(\w+): "
                     r"rerun the train stage \(dvc repro\) to resume from it" % STEPS)


class Run(TrainingRun):
    to_message: float | None = None  # seconds from the signal to the `error: stopped` line
    to_exit: float | None = None  # seconds from the signal to the exit of the launcher

    def starting(self, prefix: str) -> list[str]:
        return [line for line in self.lines() if line.startswith(prefix)]

    def resumed_from(self) -> int | None:
        found = re.findall(rf"resuming from the checkpoint at step (\d+)/{STEPS}", self.output)
        assert len(found) <= 1, self.output
        return int(found[0]) if found else None



def train(cwd: Path, stop_at: int | None = None, signum: int = signal.SIGTERM, pythonpath: Path | None = None
          ) -> Run:
    """The train stage in `cwd`; with `stop_at`, `signum` goes to the process the user started (torchrun's agent
    runs in it) once the progress bar shows that step."""
    env = {"PYTHONPATH": str(pythonpath)} if pythonpath else None
    run = Run(**vars(watch_training(cwd, STEPS, stop_at, lambda proc, _: proc.send_signal(signum), TIMEOUT,
                                    watch_for=b"error: stopped", env=env)))
    if run.acted_at:
        run.to_message = run.seen_at - run.acted_at if run.seen_at else None
        run.to_exit = run.ended - run.acted_at
    return run


def workdir(root: Path, base: Path, nproc: int = 1) -> Path:
    prepare_stage_inputs(root, base, easy_rows(64), easy_rows(16, seed=2), train={**PARAMS, "nproc_per_node": nproc})
    return root


def same_outputs(work: Path, reference: Path) -> None:
    for name in OUTPUTS:
        assert (work / name).read_bytes() == (reference / name).read_bytes(), name


def checkpoints(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("step-*"))


def stopped_state(run: Run, work: Path) -> dict:
    """What a stopped run left: its step and checkpoint directory (from its line), the checkpoint files."""
    found = STOPPED.fullmatch((run.starting("error: ") or [""])[-1])
    if not found:
        return {"step": None, "directory": None, "checkpoints": [], "model": None, "summary": None}
    directory = work / ".scratch" / "train" / found.group(3)
    summary = work / OUTPUTS[1]
    return {"step": int(found.group(2)), "directory": directory, "checkpoints": checkpoints(directory),
            "model": (work / OUTPUTS[0]).exists(),
            "summary": json.loads(summary.read_text()) if summary.exists() else None}


def run_all(jobs: dict[str, tuple[Path, dict]]) -> dict[str, Run]:
    """`train(directory, **options)` of each job, two at a time: on 2 cores a run is mostly imports."""
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(train, work, **options) for name, (work, options) in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def copy_work(work: Path, to: Path) -> Path:
    return Path(shutil.copytree(work, to, symlinks=True))


def damage_newest(work: Path, how) -> None:
    newest = sorted((work / ".scratch" / "train").glob("*/step-*.pt"))[-1]
    how(newest)


def flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = {"truncated": lambda pt: os.truncate(pt, pt.stat().st_size // 3),
           "flipped": lambda pt: flip_byte(pt, pt.stat().st_size // 2)}


@pytest.fixture(scope="module")
def runs(tiny_base, tmp_path_factory) -> dict:
    """Every training run of this file. First the uninterrupted references with 1 and 2 processes and a run of
    each stopped by SIGTERM after a few steps; then the reruns: of the 1-process one as it was, of a copy of it
    with its newest checkpoint truncated and of another with a training module edited, and of the 2-process one
    with a byte of its newest checkpoint flipped (rank 0 decides, both ranks resume from the previous one).
    {name: (directory, Run)}, and stopped{n}_state: what the stopped runs left."""
    fresh = {f"{kind}{n}": workdir(tmp_path_factory.mktemp(f"{kind}{n}"), tiny_base, n)
             for kind in ("reference", "stopped") for n in (1, 2)}
    first = run_all({name: (work, {"stop_at": STOP_AT} if name.startswith("stopped") else {})
                     for name, work in fresh.items()})
    out = {name: (fresh[name], run) for name, run in first.items()}
    for n in (1, 2):
        out[f"stopped{n}_state"] = stopped_state(first[f"stopped{n}"], fresh[f"stopped{n}"])
    copies = {name: copy_work(fresh["stopped1"], tmp_path_factory.mktemp(name) / "work")
              for name in ("truncated", "edited")}
    damage_newest(copies["truncated"], DAMAGES["truncated"])
    damage_newest(fresh["stopped2"], DAMAGES["flipped"])
    project = tmp_path_factory.mktemp("edited-project")  # the code as it is after an edit of a training module
    for package in ("rewardkit", "stages"):
        shutil.copytree(REPO_ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(project / "rewardkit" / "modeling" / "objective.py", "a", encoding="utf-8") as f:
        f.write("\n# an edit: the checkpoint key must change with it\n")
    jobs = {"resumed1": (fresh["stopped1"], {}), "flipped": (fresh["stopped2"], {}),
            "truncated": (copies["truncated"], {}), "edited": (copies["edited"], {"pythonpath": project})}
    out.update((name, (jobs[name][0], run)) for name, run in run_all(jobs).items())
    return out


def check_stopped(run: Run, work: Path, state: dict, signum: int = signal.SIGTERM) -> None:
    """The one line, the exit code and the checkpoints of a stopped run."""
    assert run.returncode == 128 + signum, run.output
    errors = run.starting("error: ")
    assert len(errors) == 1 and (found := STOPPED.fullmatch(errors[0])), run.output
    assert "Traceback" not in run.output and not state["model"], run.output
    step = state["step"]
    # the dvclive summary, written every step, shows how far the run got and no final metric: no model was made
    assert state["summary"]["step"] == step and "train_loss" not in state["summary"], state["summary"]
    assert found.group(1) == signal.Signals(signum).name and STOP_AT <= step < STEPS
    assert run.to_message < 10 and run.to_exit < 30, (run.to_message, run.to_exit)  # the step, then a checkpoint
    periodic = (step - 1) // 4 * 4  # the last periodic checkpoint before it
    assert state["checkpoints"] == [f"step-{s:08d}.{ext}" for s in (periodic, step) for ext in ("json", "pt")]


def check_resumed(runs: dict, name: str, reference: str, step: int) -> Path:
    work, run = runs[name]
    assert run.returncode == 0, run.output
    assert run.resumed_from() == step and "Traceback" not in run.output, run.output
    same_outputs(work, runs[reference][0])
    return work


# ------------------------------------------------------------------------------------------- SIGTERM
def test_sigterm_stops_after_the_step_and_the_rerun_resumes_byte_identical(runs):
    work, run = runs["stopped1"]
    state = runs["stopped1_state"]
    check_stopped(run, work, state)
    check_resumed(runs, "resumed1", "reference1", state["step"])
    assert "warning" not in runs["resumed1"][1].output
    assert not state["directory"].exists()  # removed once the outputs are written


def test_sigterm_stops_two_ranks_after_the_same_step_with_one_line(runs):
    # the agent passed SIGTERM on; both ranks agreed on the step through an all_reduce, rank 0 saved, each said so
    # (the launcher shows the line once) and the launcher added no line of its own. Its rerun: test_a_damaged_...
    work, run = runs["stopped2"]
    check_stopped(run, work, runs["stopped2_state"])


# -------------------------------------------------------------------------------------- damaged checkpoints
@pytest.mark.parametrize("damage, nproc, why", [("truncated", 1, "truncated"),
                                                ("flipped", 2, "sha256 differs from its manifest")])
def test_a_damaged_checkpoint_is_set_aside_and_the_previous_one_resumed(runs, damage, nproc, why):
    state = runs[f"stopped{nproc}_state"]
    previous = int(state["checkpoints"][0][5:13])
    work = check_resumed(runs, damage, f"reference{nproc}", previous)
    directory = work / state["directory"].relative_to(runs[f"stopped{nproc}"][0])
    newest = directory / state["checkpoints"][-1]
    warnings = runs[damage][1].starting("warning: ")
    assert len(warnings) == 1, runs[damage][1].output
    assert warnings[0].startswith(f"warning: checkpoint {newest.relative_to(work)} is damaged (")
    assert why in warnings[0] and f"moved it aside to {newest.name}.damaged" in warnings[0]
    assert warnings[0].endswith(f"resuming from the one of step {previous}")
    # kept for a post-mortem, never loaded again; the good checkpoints are gone with the finished run
    assert sorted(p.name for p in directory.iterdir()) == [f"{newest.stem}.json.damaged", f"{newest.name}.damaged"]


# ----------------------------------------------------------------------------------------- code fingerprint
def test_a_checkpoint_made_by_other_code_is_not_resumed(runs):
    work, run = runs["edited"]
    assert run.returncode == 0, run.output
    assert run.resumed_from() is None and "warning" not in run.output
    state = runs["stopped1_state"]
    old = work / state["directory"].relative_to(runs["stopped1"][0])
    assert checkpoints(old) == state["checkpoints"]  # left alone: the directory of another key
    same_outputs(work, runs["reference1"][0])  # a comment changes no number: from scratch to the same bytes


# ------------------------------------------------------------------------------------------ damaged model
@pytest.fixture
def trained(runs, tmp_path) -> Path:
    """A copy of the single-process reference's directory (the trained model, the eval token store)."""
    return copy_work(runs["reference1"][0], tmp_path / "trained")


def test_a_damaged_model_file_is_one_line_for_score_and_evaluate(trained):
    weights = trained / MODEL / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)
    write_jsonl(trained / "in.jsonl", [{"prompt": "p", "response": "r"}])
    score = run_stage(trained, "score", "--model", MODEL, "--input", "in.jsonl", "--output", "out.jsonl",
                      "--device", "cpu")
    assert score.returncode == 2 and score.stderr.count("\n") == 1, score.stderr
    assert score.stderr.startswith(f"error: {MODEL}/model.safetensors is damaged (")
    assert f"`dvc checkout {MODEL}`" in score.stderr and "`dvc repro train`" in score.stderr
    assert not (trained / "out.jsonl").exists()

    flip_byte(weights, 10)  # inside its JSON header
    evaluate = run_stage(trained, "evaluate")
    assert evaluate.returncode == 2, evaluate.stderr
    assert evaluate.stderr.splitlines()[-1].startswith(f"error: {MODEL}/model.safetensors is damaged (")
    assert "Traceback" not in evaluate.stderr


# --------------------------------------------------------------------------------- full / read-only disks
@pytest.fixture
def small_fs(tmp_path):
    """mount(options) -> a directory on a 300 KB tmpfs, unmounted afterwards (root only)."""
    mounted = []

    def mount(name: str, options: str = "") -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root")
        target = tmp_path / name
        target.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=300k{options}", "tmpfs", str(target)],
                              capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"mount -t tmpfs failed: {done.stderr.strip()}")
        mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], check=False)


def fill(directory: Path, leave: int = 16 << 10) -> None:
    """Take all of the file system's space but `leave` bytes."""
    free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
    (directory / "filler").write_bytes(b"x" * max(0, free - leave))


def data_work(root: Path, rows: int = 1200) -> Path:
    """A directory with a dataset for validate and a validated file for split, each ~150 KB."""
    write_params(root, {"data": {"path": "dataset/pairs.jsonl", "dir": "dataset"}})
    write_jsonl(root / "dataset" / "pairs.jsonl", easy_rows(rows))
    write_jsonl(root / "validated.jsonl", easy_rows(rows))
    return root


def one_line(done: subprocess.CompletedProcess, start: str) -> str:
    line = done.stderr.splitlines()[-1] if done.stderr else ""
    assert done.returncode == 2 and line.startswith(start), done.stderr
    assert "Traceback" not in done.stderr
    return line


def data_stages_writing_to(work: Path, target: Path) -> tuple[subprocess.CompletedProcess, ...]:
    """validate and split in `work`, every output of theirs in `target`."""
    validate = run_stage(work, "validate", "--validated", f"{target}/validated.jsonl", "--rejects",
                         f"{target}/rejects.jsonl", "--metrics", f"{target}/validate.json")
    split = run_stage(work, "split", "--input", "validated.jsonl", "--train", f"{target}/train.jsonl", "--eval",
                      f"{target}/eval.jsonl", "--metrics", f"{target}/split.json")
    return validate, split


def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(small_fs, trained, tmp_path):
    work, full = data_work(tmp_path / "data"), small_fs("full")
    fill(full)
    validate, split = data_stages_writing_to(work, full)
    line = one_line(validate, f"error: no space left on device writing {full}")
    assert line.endswith(f": free some space (df -h {full}) and rerun")
    one_line(split, f"error: no space left on device writing {full}")
    write_jsonl(trained / "in.jsonl", [{"prompt": r["prompt"], "response": r["chosen"]} for r in easy_rows(300)])
    score = run_stage(trained, "score", "--model", MODEL, "--input", "in.jsonl", "--output", f"{full}/scored.jsonl",
                      "--device", "cpu")
    assert one_line(score, "error: ") == (f"error: no space left on device writing {full}/scored.jsonl: free some "
                                          f"space (df -h {full}) and rerun")
    assert os.listdir(full) == ["filler"]  # no temporary file, no half-written output


def test_a_read_only_file_system_is_one_line(small_fs, tmp_path):
    work, read_only = data_work(tmp_path / "data", rows=50), small_fs("ro", ",ro")
    validate, split = data_stages_writing_to(work, read_only)
    line = one_line(validate, f"error: read-only file system: {read_only}/")
    assert line.endswith(f"write to a writable file system, or remount {read_only} read-write, and rerun")
    one_line(split, f"error: read-only file system: {read_only}/")
    assert os.listdir(read_only) == []
