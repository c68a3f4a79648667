"""Our trainer and evaluator, timed through the real code, as a subprocess of the bench (one process each, so
its peak RSS is its own). Prints one JSON line, like the peer scripts.

    python -m bench.ours train MODEL_DIR DATA.jsonl [--steps 20] [--warmup 2] [--batch 10] [--max-length 512]
    python -m bench.ours eval MODEL_DIR DATA.jsonl [--batch 64] [--max-length 512]

train: `rewardkit.optimization.optimize` (the train stage's loop) over DATA, which holds exactly (warmup + steps)
x batch pairs, so one epoch is the run; its `on_step` callback stamps each optimizer step with the real tokens it
read, and the steps after the first `--warmup` are timed. Settings as the peers: AdamW lr 5e-5, constant schedule,
fp32, no checkpoints.
eval: `rewardkit.evaluation.score_pairs` (encoding + `score_sequences` in inference mode, the evaluate stage's
code path) over all of DATA, after one small untimed warm-up call.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from rewardkit.config import TrainConfig
from rewardkit.distributed import Ranks
from rewardkit.encoding import encode_both_answers, encode_training_pairs
from rewardkit.evaluation import score_pairs
from rewardkit.model import load_base
from rewardkit.optimization import optimize

SEED = 42


def read_rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def time_training(model_dir: str, data: str, steps: int, warmup: int, batch: int, max_length: int,
                  compile_model: bool = False) -> dict:
    model, tokenizer = load_base(model_dir, "cls", SEED)
    rows = read_rows(data)
    pairs = encode_training_pairs(tokenizer, rows, max_length)
    if len(pairs.chosen) != (steps + warmup) * batch:
        raise SystemExit(f"{data}: {len(pairs.chosen)} usable pairs, expected (steps + warmup) x batch = "
                         f"{(steps + warmup) * batch}")
    cfg = TrainConfig(max_length=max_length, batch_size=batch, epochs=1, lr=5e-5, scheduler="constant",
                      warmup_ratio=0.0, checkpoint_every=0, device="cpu", compile=compile_model, seed=SEED)
    stamps: list[tuple[float, int]] = []  # (time, tokens) after each optimizer step
    with tempfile.TemporaryDirectory() as ckpt:
        curve = optimize(model, pairs, cfg, torch.device("cpu"), Ranks(), tokenizer.pad_token_id, Path(ckpt),
                         on_step=lambda record: stamps.append((time.perf_counter(), record["tokens"])))
    tokens = sum(n for _, n in stamps[warmup:warmup + steps])
    seconds = stamps[warmup + steps - 1][0] - stamps[warmup - 1][0]
    return {"impl": "ours", "pairs_per_s": steps * batch / seconds, "s_per_step": seconds / steps,
            "tokens": tokens, "kept_pairs": len(pairs.chosen), "last_loss": curve[-1]["loss"],
            "threads": torch.get_num_threads()}


def time_evaluation(model_dir: str, data: str, batch: int, max_length: int) -> dict:
    model, tokenizer = load_base(model_dir, "cls", SEED)
    model.eval()
    rows = read_rows(data)
    device = torch.device("cpu")
    score_pairs(model, tokenizer, max_length, rows[:2], batch, device)  # warm-up: first-call allocations
    start = time.perf_counter()
    chosen, rejected = score_pairs(model, tokenizer, max_length, rows, batch, device)
    seconds = time.perf_counter() - start
    tokens = sum(map(len, encode_both_answers(tokenizer, rows, max_length).ids))  # the tokens that were scored
    return {"impl": "ours-eval", "pairs_per_s": len(rows) / seconds, "seconds": seconds, "tokens": tokens,
            "accuracy": (chosen > rejected).double().mean().item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("train", "eval"))
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--compile", action="store_true", help="train with train.compile=true")
    a = parser.parse_args()
    if a.mode == "train":
        if a.warmup < 1 or a.steps < 1:
            parser.error("--warmup and --steps must be at least 1 (the first timed step starts after a warm-up)")
        result = time_training(a.model, a.data, a.steps, a.warmup, a.batch, a.max_length, a.compile)
    else:
        result = time_evaluation(a.model, a.data, a.batch, a.max_length)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
