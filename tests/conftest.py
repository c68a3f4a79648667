"""The shared test fixtures and helpers, in one place.

Two tiers: tests/unit/ runs in this process (tiny models built here, library calls, no subprocesses; `make
test-fast`), tests/e2e/ starts real processes (dvc, torchrun, the stage CLIs, servers) and is marked `e2e`.

Data: `easy_rows(n)` (arithmetic pairs a tiny model learns in a few steps), `write_jsonl(path, rows)`.
Models: `tiny_config(**overrides)` (DeBERTa-v3 architecture at test size), the session fixtures `tiny_base`
(a random-init base directory with a SentencePiece tokenizer, what `model.name` points at) and `trained_model`
(a stage working directory after train + evaluate of that base on easy pairs).
Stages: `stage_args(stage)` (the paths dvc.yaml gives it), `write_params(dir, sections)` (dir's params.yaml, or the
project's, with sections updated key by key), `run_stage(cwd, stage, *args)` (a real `python -m stages.<stage>`),
`watch_training(cwd, ...)` (a real train stage, watched: kill or signal it at a step, no process left behind).
Repositories: `git(repo, *args)` with its own identity, `repo_copy` (the project in a committed git repo),
`run_dvc(repo, *args)`. Subprocesses get a HOME of their own, so no user git config or cache is ever used.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import psutil
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "tests", "GIT_AUTHOR_EMAIL": "tests@example.invalid",
                "GIT_COMMITTER_NAME": "tests", "GIT_COMMITTER_EMAIL": "tests@example.invalid"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e/ is in the e2e tier (`-m "not e2e"` leaves it out)."""
    for item in items:
        if (REPO_ROOT / "tests" / "e2e") in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)


# ----------------------------------------------------------------------------------------------------- data
def easy_rows(n: int, seed: int = 0, prefix: str = "") -> list[dict]:
    """Arithmetic questions whose chosen answer is right and rejected answer hedges with a wrong sum."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 999), rng.randint(1, 999)
        prompt = f"User: {prefix}what is {a} plus {b}? (case {seed}-{i})\nAssistant:"
        wrong = a + b + rng.choice([-10, -2, -1, 1, 3, 7])
        rows.append({"prompt": prompt, "chosen": f" The sum is {a + b}.",
                     "rejected": f" Probably about {wrong}, but I am not sure."})
    return rows


def write_jsonl(path: Path, rows: Iterable[object]) -> Path:
    """Rows as JSONL (dicts and lists are JSON-encoded, str and bytes written as the line itself)."""
    def line(row: object) -> bytes:
        if isinstance(row, bytes):
            return row
        return (row if isinstance(row, str) else json.dumps(row)).encode("utf-8")

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line(r) + b"\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# the stages' dvclive directories (dvc.yaml's --live paths) and what dvclive writes in them
def train_summary(work: Path) -> dict:
    """metrics/train/metrics.json: the train stage's dvclive summary (its metrics)."""
    return json.loads((work / "metrics/train/metrics.json").read_text(encoding="utf-8"))


def live_series(work: Path, name: str) -> list[tuple[int, float]]:
    """(step, value) rows of the train stage's per-step metric `name` (metrics/train/plots/metrics/<name>.tsv)."""
    lines = (work / "metrics/train/plots/metrics" / f"{name}.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"step\t{name}", lines[0]
    return [(int(step), float(value)) for step, value in (line.split("\t") for line in lines[1:])]


def live_curve(work: Path) -> list[dict]:
    """The train stage's per-step records ({"step", "epoch", "loss", "accuracy", "lr"}) joined from its .tsv files."""
    series = {name: live_series(work, name) for name in ("epoch", "loss", "accuracy", "lr")}
    steps = [step for step, _ in series["loss"]]
    assert all([step for step, _ in rows] == steps for rows in series.values())
    return [{"step": step, **{name: rows[i][1] for name, rows in series.items()}} for i, step in enumerate(steps)]


def live_plot(work: Path, stage: str, name: str) -> list[dict]:
    """The rows of a custom plot, metrics/<stage>/plots/custom/<name>.json."""
    return json.loads((work / "metrics" / stage / "plots/custom" / f"{name}.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------------- models
def tiny_config(**overrides) -> dict:
    """DebertaV2Config values of a test-size DeBERTa-v3 (everything but the sizes as in deberta-v3-small)."""
    from rewardkit.encoding.scratch import DEBERTA_V3_SMALL

    return {**DEBERTA_V3_SMALL, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
            "intermediate_size": 128, **overrides}


def build_tiny_base(out_dir: Path, rows: list[dict], seed: int = 0, vocab_size: int = 400, **sizes) -> Path:
    """A randomly initialised tiny DeBERTa-v3 reward model and a SentencePiece tokenizer trained on `rows`."""
    from rewardkit.modeling.scratch import build_scratch

    texts = [t for r in rows for t in (r["prompt"], r["chosen"], r["rejected"])]
    return build_scratch(tiny_config(**sizes), texts, vocab_size, out_dir, seed)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """One tiny base for the session, its tokenizer trained on easy_rows of seeds 0-2."""
    rows = easy_rows(300) + easy_rows(60, seed=1) + easy_rows(60, seed=2)
    return build_tiny_base(tmp_path_factory.mktemp("tiny-base") / "base", rows)


def train_in_process(work: Path, base: Path | str, train_rows: list[dict], eval_rows: list[dict] | None = None,
                     **params) -> Path:
    """Run the tokenize, train (and, with eval rows, evaluate) stages' library code in `work` with the paths
    dvc.yaml gives them; `params` override params.yaml as {"train": {...}}; `base` is model.name."""
    from rewardkit.config import EvaluateConfig, ModelConfig, TrainConfig, build
    from rewardkit.evaluation.job import evaluate_model
    from rewardkit.training.distributed import Ranks
    from rewardkit.training.job import train_reward_model

    merged = prepare_stage_inputs(work, base, train_rows, eval_rows, **params)
    model_cfg, train_cfg = build(ModelConfig, merged), build(TrainConfig, merged)
    train_reward_model(train_paths(work), model_cfg, train_cfg, resolve_cpu(), Ranks())
    if eval_rows is not None:
        (work / "eval_sets").mkdir(exist_ok=True)
        evaluate_model(evaluate_paths(work), build(EvaluateConfig, merged), device="cpu")
    return work


def prepare_stage_inputs(work: Path, base: Path | str, train_rows: list[dict], eval_rows: list[dict] | None = None,
                         **params) -> dict:
    """What the train stage reads, made in `work` as the pipeline makes it: params.yaml (model.name = base, plus
    `params` as {"train": {...}}), the split files and their token stores (the tokenize stage, in process).
    Returns the params."""
    from rewardkit.config import ModelConfig, TrainConfig, build
    from rewardkit.encoding.tokenization import tokenize_splits

    sections = {**params, "model": {"name": str(base), **params.get("model", {})}}
    merged = yaml.safe_load(write_params(work, sections).read_text(encoding="utf-8"))
    write_jsonl(work / "data" / "train.jsonl", train_rows)
    write_jsonl(work / "data" / "eval.jsonl", eval_rows or train_rows[:1])
    tokenize_splits(tokenize_paths(work), build(ModelConfig, merged), build(TrainConfig, merged))
    return merged


def resolve_cpu():
    import torch

    return torch.device("cpu")


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory, tiny_base) -> Path:
    """A stage working directory after train + evaluate of the tiny base: 4 steps on 32 easy pairs at a high
    learning rate without warm-up, so chosen and rejected rewards already differ. models/reward_model is in it."""
    work = tmp_path_factory.mktemp("trained")
    return train_in_process(work, tiny_base, easy_rows(32, seed=1), easy_rows(12, seed=2),
                            train={"max_length": 64, "epochs": 1, "batch_size": 8, "lr": 1e-2,
                                   "warmup_ratio": 0.0, "checkpoint_every": 0})


# --------------------------------------------------------------------------------------------------- stages
def dvc_stage(stage: str) -> dict:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"][stage]


def stage_args(stage: str) -> list[str]:
    """The arguments dvc.yaml's cmd gives `python -m stages.<stage>` (its file paths)."""
    return shlex.split(dvc_stage(stage)["cmd"])[3:]


def _paths(stage: str, work: Path) -> dict[str, Path]:
    args = stage_args(stage)
    return {flag.removeprefix("--").replace("-", "_"): work / value for flag, value in zip(args[::2], args[1::2])}


def tokenize_paths(work: Path):
    from rewardkit.encoding.tokenization import TokenizePaths

    p = _paths("tokenize", work)
    return TokenizePaths(p["train"], p["eval"], p["train_store"], p["eval_store"], p["tokenizer"])


def train_paths(work: Path):
    from rewardkit.training.job import TrainPaths

    p = _paths("train", work)
    return TrainPaths(p["store"], p["tokenizer"], p["model"], p["live"], p["scratch"])


def evaluate_paths(work: Path):
    from rewardkit.evaluation.job import EvaluatePaths

    p = _paths("evaluate", work)
    return EvaluatePaths(p["store"], p["model"], p["release"], p["scores"], p["metrics"], p["live"],
                         p["extra_dir"], p["extra_out"], p["eval_rows"], p["report"])


def write_params(directory: Path, sections: dict[str, dict]) -> Path:
    """directory/params.yaml with the given sections updated key by key: the file already there (a repository
    copy's), else the project's params.yaml."""
    existing = directory / "params.yaml"
    params = yaml.safe_load((existing if existing.is_file() else REPO_ROOT / "params.yaml").read_text("utf-8"))
    for section, values in sections.items():
        params[section] = {**(params.get(section) or {}), **values}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def subprocess_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of every process a test starts: this venv first on PATH, the project importable, a HOME
    of its own (no user git config, pip or HF cache) and a git identity of its own."""
    home = home or Path(os.environ.get("PYTEST_HOME", "/nonexistent"))
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO_ROOT), "HOME": str(home), "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1", "DVC_NO_ANALYTICS": "1", **GIT_IDENTITY, **extra}


@pytest.fixture(scope="session", autouse=True)
def _empty_home(tmp_path_factory) -> None:
    """Every subprocess runs with an empty HOME, as on a fresh machine."""
    home = tmp_path_factory.mktemp("home")
    os.environ["PYTEST_HOME"] = str(home)


def run_stage(cwd: Path, stage: str, *args: str, timeout: float = 300,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -m stages.<stage> *args` (default: dvc.yaml's arguments) in `cwd`; text output captured."""
    module = stage if "." in stage else f"stages.{stage}"
    argv = list(args) if args else (stage_args(stage) if "." not in stage else [])
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**subprocess_env(), **(env or {})})


@dataclass
class TrainingRun:
    """A finished `python -m stages.train` subprocess as `watch_training` saw it."""

    returncode: int
    output: str  # stdout and stderr together, as a user sees them
    workers: int  # processes the launcher started (0: it trained itself)
    acted_at: float | None  # monotonic time of `act`, if it ran
    ended: float  # monotonic time the launcher exited
    seen_at: float | None  # when `watch_for` first appeared in the output

    def lines(self) -> list[str]:
        """Output lines as a terminal shows them: of a line redrawn with \\r, the last state."""
        return [line.split("\r")[-1] for line in self.output.split("\n") if line.split("\r")[-1].strip()]

    def errors(self) -> list[str]:
        return [line for line in self.lines() if line.startswith("error: ")]


def watch_training(cwd: Path, total_steps: int, act_at: int | None = None, act=None, timeout: float = 120,
                   watch_for: bytes = b"", env: dict[str, str] | None = None) -> TrainingRun:
    """Run the train stage in `cwd` (one intra-op thread a process) in a session of its own; once rank 0's progress
    bar shows step `act_at`, call `act(proc, workers)` once. Fails the test when the run outlives `timeout` and
    asserts that no process of the run is left afterwards."""
    proc = subprocess.Popen([sys.executable, "-m", "stages.train", *stage_args("train")], cwd=cwd,
                            env={**subprocess_env(OMP_NUM_THREADS="1"), **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    chunks: list[bytes] = []
    seen_at: list[float] = []

    def read() -> None:
        while chunk := os.read(proc.stdout.fileno(), 1 << 16):
            chunks.append(chunk)
            if watch_for and not seen_at and watch_for in b"".join(chunks[-2:]):
                seen_at.append(time.monotonic())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    workers: dict[int, psutil.Process] = {}
    deadline, acted_at = time.monotonic() + timeout, None
    while proc.poll() is None:
        try:
            workers.update((p.pid, p) for p in psutil.Process(proc.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass
        steps = re.findall(rb"(\d+)/%d \[" % total_steps, b"".join(chunks))
        if act_at and acted_at is None and steps and int(steps[-1]) >= act_at:
            act(proc, workers)
            acted_at = time.monotonic()
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            for p in workers.values():
                with contextlib.suppress(psutil.Error):
                    p.kill()
            pytest.fail(f"the run did not end within {timeout} s:\n{b''.join(chunks).decode(errors='replace')}")
        time.sleep(0.02)
    ended = time.monotonic()
    reader.join(timeout=30)
    _, alive = psutil.wait_procs(list(workers.values()), timeout=30)
    assert not alive, f"processes left running after the launcher exited: {alive}"
    output = b"".join(chunks).decode(errors="replace")
    if act_at:
        assert acted_at is not None, f"the run ended before step {act_at}:\n{output}"
    return TrainingRun(proc.returncode, output, len(workers), acted_at, ended, seen_at[0] if seen_at else None)


# ----------------------------------------------------------------------------------------------- git + dvc
SMALL_PIPELINE = {"data": {"path": "dataset/small.jsonl"},
                  "model": {"name": "scratch-tiny", "scratch_vocab_size": 600},
                  "train": {"max_length": 64, "batch_size": 16, "epochs": 2, "lr": 1e-3, "checkpoint_every": 0},
                  "evaluate": {"batch_size": 32}}
"""params.yaml sections of a whole pipeline that runs in seconds on dataset/small.jsonl (scratch-tiny)."""


def git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True,
                          env=subprocess_env())


def run_dvc(repo: Path, *args: str, timeout: float = 300, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "dvc"), *args], cwd=repo, capture_output=True, text=True,
                          timeout=timeout, env={**subprocess_env(), **(env or {})})


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A committed git repository with the project's files (tracked and untracked-but-not-ignored), where
    `dvc repro` can run without touching ours."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    repo = tmp_path / "repo"
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file():  # deleted-but-tracked files are listed too
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    git(repo.parent, "init", "-q", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "copy of the project for a test")
    return repo

