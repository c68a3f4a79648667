"""Our trainer and evaluator, timed through the real code, as a subprocess of the bench (one process each, so
its peak RSS is its own). Prints one JSON line, like the peer scripts.

    python -m bench.ours train MODEL_DIR DATA.jsonl [--steps 20] [--warmup 2] [--batch 10] [--max-length 512]
    python -m bench.ours eval MODEL_DIR DATA.jsonl [--batch 64] [--max-length 512]

train: `stages.train.train_steps` (the train stage's loop) over DATA, which holds exactly (warmup + steps) x
batch pairs, so one epoch is the run; its `on_step` callback stamps each optimizer step and the steps after the
first `--warmup` are timed. Their real tokens are counted from the same length-grouped batch order
(`length_grouped_batches` is a pure function of seed and epoch). Settings as the peers: AdamW lr 5e-5, constant
schedule, fp32, no checkpoints.
eval: `stages.evaluate.score_pairs` (encoding + `score_ids` in inference mode, the evaluate stage's code path)
over all of DATA, after one small untimed warm-up call.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stages import distributed
from stages.batching import length_grouped_batches
from stages.config import TrainConfig
from stages.encoding import encode_pairs
from stages.evaluate import score_pairs
from stages.modeling import load_base
from stages.train import train_steps

SEED = 42


def read_rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def time_training(model_dir: str, data: str, steps: int, warmup: int, batch: int, max_length: int,
                  compile_model: bool = False) -> dict:
    model, tokenizer = load_base(model_dir, "cls", SEED)
    rows = read_rows(data)
    enc = encode_pairs(tokenizer, rows, max_length)
    if len(enc.chosen) != (steps + warmup) * batch:
        raise SystemExit(f"{data}: {len(enc.chosen)} usable pairs, expected (steps + warmup) x batch = "
                         f"{(steps + warmup) * batch}")
    cfg = TrainConfig(max_length=max_length, batch_size=batch, epochs=1, lr=5e-5, scheduler="constant",
                      warmup_ratio=0.0, checkpoint_every=0, device="cpu", compile=compile_model, seed=SEED)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as ckpt:
        curve = train_steps(model, enc, cfg, torch.device("cpu"), distributed.Dist(), tokenizer.pad_token_id,
                            Path(ckpt), on_step=lambda record: stamps.append(time.perf_counter()))
    lengths = np.maximum([len(c) for c in enc.chosen], [len(r) for r in enc.rejected])
    timed = length_grouped_batches(lengths, batch, SEED, 0)[warmup:warmup + steps]
    tokens = sum(len(enc.chosen[j]) + len(enc.rejected[j]) for b in timed for j in b)
    seconds = stamps[warmup + steps - 1] - stamps[warmup - 1]
    return {"impl": "ours", "pairs_per_s": steps * batch / seconds, "s_per_step": seconds / steps,
            "tokens": tokens, "kept_pairs": len(enc.chosen), "last_loss": curve[-1]["loss"],
            "threads": torch.get_num_threads()}


def time_evaluation(model_dir: str, data: str, batch: int, max_length: int) -> dict:
    model, tokenizer = load_base(model_dir, "cls", SEED)
    model.eval()
    rows = read_rows(data)
    meta, device = {"max_length": max_length}, torch.device("cpu")
    score_pairs(model, tokenizer, meta, rows[:2], batch, device)  # warm-up: first-call allocations
    start = time.perf_counter()
    chosen, rejected = score_pairs(model, tokenizer, meta, rows, batch, device)
    seconds = time.perf_counter() - start
    enc = encode_pairs(tokenizer, rows, max_length)  # only to count the tokens that were scored
    tokens = sum(len(c) + len(r) for c, r in zip(enc.chosen, enc.rejected))
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
