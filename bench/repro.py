"""Time a no-op `dvc repro`: in a copy of the project where the whole pipeline already ran once with a tiny
config, run `dvc repro` a second time. Target: <= 3 s (what a user waits for "nothing changed")."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bench.workloads import ROOT, read_jsonl, write_jsonl

TARGET_S = 3.0
# a config that runs the four stages in seconds: the shipped params with a scratch-tiny model and short sequences
TINY_PARAMS = {"model": {"name": "scratch-tiny", "scratch_vocab_size": 400},
               "train": {"max_length": 128, "batch_size": 16, "epochs": 1, "checkpoint_every": 0, "device": "cpu",
                         "lr": 1e-3, "warmup_ratio": 0.0}}


def project_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files of the working tree, without the bench and the tests."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split("\n")
    return [f for f in out if f and not f.startswith(("bench/", "tests/", ".ci/")) and (ROOT / f).is_file()]


def prepare(work: Path, data: Path, rows: int) -> dict:
    """Copy the project into `work`, point it at `rows` bench pairs with the tiny config; returns the env."""
    shutil.rmtree(work, ignore_errors=True)
    for f in project_files():
        (work / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, work / f)
    write_jsonl(work / "dataset" / "bench.jsonl", read_jsonl(data)[:rows])
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["path"] = "dataset/bench.jsonl"
    for section, values in TINY_PARAMS.items():
        params[section].update(values)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    bin_dir = str(Path(sys.executable).parent)  # the stages' `python` and `dvc` are this venv's
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    subprocess.run(["dvc", "config", "core.no_scm", "true"], cwd=work, env=env, check=True, capture_output=True)
    return env


def time_noop_repro(work: Path, data: Path, rows: int = 120) -> dict:
    """{"first_s", "noop_s", "up_to_date"}: a full `dvc repro`, then the timed no-op one."""
    env = prepare(work, data, rows)
    timings = []
    for attempt in ("first", "noop"):
        log = work.parent / f"repro-{attempt}.log"
        start = time.perf_counter()
        with open(log, "wb") as out:
            proc = subprocess.run(["dvc", "repro"], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
        timings.append(time.perf_counter() - start)
        if proc.returncode:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"`dvc repro` ({attempt}) failed in {work}; last lines of {log}:\n{tail}")
    text = (work.parent / "repro-noop.log").read_text(errors="replace")
    ran = [line for line in text.splitlines() if line.startswith("Running stage")]
    return {"first_s": timings[0], "noop_s": timings[1], "up_to_date": not ran}
