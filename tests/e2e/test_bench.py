"""The benchmark harness: its smoke run prints the table, and it counts the tokens our trainer really processes."""
from __future__ import annotations

import subprocess
import sys

from bench import ours
from bench.__main__ import HEADER
from rewardkit.modeling.model import load_base
from tests.conftest import REPO_ROOT as ROOT
from tests.conftest import build_tiny_base, easy_rows, subprocess_env, write_jsonl


def test_quick_bench_prints_the_table(tmp_path):
    env = subprocess_env(BENCH_OUT=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--workloads", "tiny", "--skip-peers",
                           "--skip-repro", "--no-record"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert HEADER in lines
    rows = {cells[1]: cells for cells in (line.split(" | ") for line in lines if line.startswith("| tiny |"))}
    assert set(rows) == {"ours", "ours eval"}
    assert float(rows["ours"][2]) > 0 and int(rows["ours"][4].replace(",", "")) > 100  # pairs/s, peak RSS MB
    assert any(line.startswith("- target tiny evaluation >= 3x training pairs/s") for line in lines)
    assert (tmp_path / "logs" / "tiny-ours.log").is_file()


def test_timed_tokens_are_the_tokens_of_the_timed_forwards(tmp_path, monkeypatch):
    rows = easy_rows(30)
    model_dir = build_tiny_base(tmp_path / "model", rows)
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    seen: list[int] = []

    def load_with_counter(*args, **kwargs):
        model, tokenizer = load_base(*args, **kwargs)
        model.register_forward_pre_hook(lambda module, inputs: seen.append(int(inputs[1].sum())))  # mask
        return model, tokenizer

    monkeypatch.setattr(ours, "load_base", load_with_counter)
    result = ours.time_training(str(model_dir), str(data), steps=2, warmup=1, batch=10, max_length=64)
    assert len(seen) == 3  # one forward per step over chosen + rejected
    assert result["tokens"] == sum(seen[1:])  # the warm-up step is not timed
    assert result["kept_pairs"] == 30 and result["pairs_per_s"] > 0


def test_the_planning_table_in_the_docs_is_what_bench_memory_plan_computes():
    from bench.memory_plan import DOC, END, START

    result = subprocess.run([sys.executable, "-m", "bench.memory_plan"], cwd=ROOT, capture_output=True, text=True,
                            env=subprocess_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    text = DOC.read_text(encoding="utf-8")
    assert text[text.index(START) + len(START):text.index(END)].strip() == result.stdout.strip(), \
        "docs/scaling.md is stale: run python -m bench.memory_plan --write"
