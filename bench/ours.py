"""Our trainer and evaluator, timed through the real code, as a subprocess of the bench (one process each, so
its peak RSS is its own). Prints one JSON line, like the peer scripts.

    python -m bench.ours train MODEL_DIR DATA.jsonl [--steps 20] [--warmup 2] [--batch 10] [--max-length 512]
                               [--device cpu|cuda] [--precision fp32|bf16]
    python -m bench.ours eval MODEL_DIR DATA.jsonl [--batch 64] [--max-length 512] [--device cpu|cuda]
                              [--precision fp32|bf16]

train: DATA is tokenized into a token store by the tokenize stage's code
(`rewardkit.encoding.tokenization.store_rows`, untimed), and `rewardkit.training.loop.optimize` (the train stage's
loop) trains from that store, as the train stage does. DATA holds exactly (warmup + steps) x batch pairs, so one
epoch is the run; the `on_step` callback stamps each optimizer step with the real tokens it read, and the steps
after the first `--warmup` are timed. Settings as the peers: AdamW lr 5e-5, constant schedule, fp32 (`--device
cuda`: bf16 autocast, as the train stage runs there; `--precision` sets train.precision / evaluate.precision),
no checkpoints.
eval: DATA tokenized into a store the same way (every pair kept, as for the eval split), then
`rewardkit.evaluation.job.score_store` (the evaluate stage's scoring) over all of it, after a small untimed warm-up.
Both report `sq_tokens`, the sum of squared real sequence lengths of the timed forwards (for attention FLOPs).
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
from rewardkit.encoding.tokenization import store_rows
from rewardkit.evaluation.job import score_store
from rewardkit.modeling.batching import inference_batches
from rewardkit.modeling.model import load_base
from rewardkit.training.distributed import Ranks
from rewardkit.training.loop import optimize

SEED = 42


def read_rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def synchronized_clock(device: torch.device) -> float:
    """perf_counter once the device's queued work is done (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def peak_gpu_mb(device: torch.device) -> dict:
    return {"peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2 ** 20} if device.type == "cuda" else {}


def time_training(model_dir: str, data: str, steps: int, warmup: int, batch: int, max_length: int,
                  compile_model: bool = False, device_name: str = "cpu", precision: str = "fp32") -> dict:
    device = torch.device(device_name)
    model, tokenizer = load_base(model_dir, "cls", SEED)
    model.to(device)
    cfg = TrainConfig(max_length=max_length, batch_size=batch, epochs=1, lr=5e-5, scheduler="constant",
                      warmup_ratio=0.0, checkpoint_every=0, device=device.type, compile=compile_model, seed=SEED,
                      precision=precision)
    stamps: list[tuple[float, int, int]] = []  # (time, tokens, sum of squared lengths so far) after each step
    squares = [0]
    model.register_forward_pre_hook(lambda module, inputs: squares.__setitem__(  # inputs[1]: the attention mask
        0, squares[0] + int((inputs[1].sum(1) ** 2).sum())))
    with tempfile.TemporaryDirectory() as work:
        pairs = store_rows(read_rows(data), Path(work) / "store", tokenizer, model.hf.config, max_length)
        if len(pairs) != (steps + warmup) * batch:
            raise SystemExit(f"{data}: {len(pairs)} usable pairs, expected (steps + warmup) x batch = "
                             f"{(steps + warmup) * batch}")
        curve = optimize(model, pairs, cfg, device, Ranks(), tokenizer.pad_token_id, Path(work) / "checkpoints",
                         on_step=lambda record: stamps.append((synchronized_clock(device), record["tokens"],
                                                               squares[0])))
    tokens = sum(n for _, n, _ in stamps[warmup:warmup + steps])
    seconds = stamps[warmup + steps - 1][0] - stamps[warmup - 1][0]
    return {"impl": "ours", "pairs_per_s": steps * batch / seconds, "s_per_step": seconds / steps,
            "tokens": tokens, "sq_tokens": stamps[warmup + steps - 1][2] - stamps[warmup - 1][2],
            "kept_pairs": len(pairs), "last_loss": curve[-1]["loss"],
            "threads": torch.get_num_threads(), "precision": precision, **peak_gpu_mb(device)}


def time_evaluation(model_dir: str, data: str, batch: int, max_length: int, device_name: str = "cpu",
                    precision: str = "fp32") -> dict:
    device = torch.device(device_name)
    model, tokenizer = load_base(model_dir, "cls", SEED)
    model.to(device).eval()
    rows = read_rows(data)
    with tempfile.TemporaryDirectory() as work:
        store = store_rows(rows, Path(work) / "store", tokenizer, model.hf.config, max_length, keep_identical=True)
        warm = store_rows(rows[:2], Path(work) / "warm", tokenizer, model.hf.config, max_length, keep_identical=True)
        score_store(model, tokenizer, warm, batch, device, progress=False, precision=precision)  # warm-up
        start = synchronized_clock(device)
        chosen, rejected = score_store(model, tokenizer, store, batch, device, progress=False, precision=precision)
        seconds = synchronized_clock(device) - start
        lengths = store.sequence_lengths().tolist()
    return {"impl": "ours-eval", "pairs_per_s": len(rows) / seconds, "seconds": seconds, "tokens": sum(lengths),
            "sq_tokens": sum(n * n for n in lengths), "batches": len(inference_batches(lengths, 2 * batch, device)),
            "accuracy": (chosen > rejected).double().mean().item(), **peak_gpu_mb(device)}


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
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="cuda: bf16 autocast, as the "
                                                                                 "train stage runs it")
    parser.add_argument("--precision", choices=("fp32", "bf16"), help="default: bf16 on cuda, fp32 on cpu")
    a = parser.parse_args()
    precision = a.precision or ("bf16" if a.device == "cuda" else "fp32")
    if a.mode == "train":
        if a.warmup < 1 or a.steps < 1:
            parser.error("--warmup and --steps must be at least 1 (the first timed step starts after a warm-up)")
        result = time_training(a.model, a.data, a.steps, a.warmup, a.batch, a.max_length, a.compile, a.device, precision)
    else:
        result = time_evaluation(a.model, a.data, a.batch, a.max_length, a.device, precision)
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
