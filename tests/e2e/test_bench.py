"""The benchmark harness: its smoke run prints the table, and it counts the tokens our trainer really processes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

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


def tiny_decoder_dir(out: Path, rows: list[dict]) -> Path:
    """A tiny Llama classifier with a byte-level BPE tokenizer trained on `rows` (what bench.fsdp_scale builds at
    SmolLM2-135M dims)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    texts = [t for r in rows for t in (r["prompt"], r["chosen"], r["rejected"])]
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=600, special_tokens=["<|endoftext|>", "<|pad|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|pad|>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1, max_position_embeddings=4096,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_decoder_bench_times_shared_unshared_trl_and_best_of_n(tmp_path):
    """Every row and verdict the decoder bench prints, at tiny dims (one timed step of 2 pairs in 2 micro-batches, one repeat)."""
    from bench import workloads

    env = subprocess_env(BENCH_OUT=str(tmp_path))
    rows = workloads.read_jsonl(workloads.bench_data()[0])[:40]  # the bench's own HH-shaped rows
    model = tiny_decoder_dir(tmp_path / "model", rows)
    proc = subprocess.run([sys.executable, "-m", "bench.decoders", "--model", str(model), "--steps", "1",
                           "--warmup", "1", "--batch", "2", "--grad-accum", "2", "--max-length", "1024", "--repeats", "1", "--no-record"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()

    def rows_under(header: str) -> dict[str, list[str]]:
        start = next(i for i, line in enumerate(lines) if line.startswith(header)) + 2
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
        return {cells[0]: cells for cells in (line.strip("| ").split(" | ") for line in lines[start:end])}

    table = rows_under("| trainer | pairs/s |")
    assert set(table) == {"ours shared", "ours unshared", "trl"}
    flops = rows_under("| trainer | useful GFLOP/pair |")  # FLOPs per pair and share of the GEMM ceiling
    assert set(flops) == {"ours shared", "ours unshared", "trl"}
    assert flops["ours shared"][1].endswith("(prompt once)") and flops["trl"][1].endswith("(prompt twice)")
    assert float(flops["ours shared"][1].split()[0]) < float(flops["trl"][1].split()[0])
    assert any(line.startswith("- fp32 ") for line in lines)  # the bound line
    for name, (_, pairs_s, tokens_s, _, _, rss) in table.items():
        assert float(pairs_s) > 0 and float(tokens_s) > 0 and float(rss.replace(",", "")) > 100, name
    assert float(table["ours shared"][3]) < 1.0 <= float(table["ours unshared"][3])  # the prompt computed once
    assert table["trl"][3] == "1.00 (padded)"
    assert any(line.startswith("- target prefix sharing >= 1.3x") for line in lines)
    trl = [line for line in lines if line.startswith("- target ours >= 3x TRL")]
    assert trl and "of the 4 pairs" in trl[0]
    best = [line for line in lines if line.startswith("- target best-of-8")]
    assert best and "rewards within" in best[0]
    assert float(best[0].split("rewards within ")[1].split(")")[0]) < 1e-4  # shared scores = full-sequence ones
