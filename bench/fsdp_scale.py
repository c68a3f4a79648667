"""Model-scale benchmark (#25): a decoder at SmolLM2-135M dimensions trained by 2 processes with ddp vs fsdp, with
and without activation checkpointing, and LoRA r=16: per-rank peak RSS, its model-state part, tokens/s.

    python -m bench.fsdp_scale [--configs ddp fsdp ...] [--steps 2] [--warmup 1] [--batch 4] [--max-length 128]
        [--nproc 2] [--precision fp32] [--dims smollm2-135m|qwen2-0.5b] [--model DIR] [--load rank0|every]
        [--no-record]

Model: LlamaForSequenceClassification at SmolLM2-135M's published dims (hidden 576, 30 layers, 9 heads, 3 KV heads,
intermediate 1536, vocabulary 49152, tied embeddings), random init (seed 0), with a byte-level BPE tokenizer
trained on the bench conversations (bench/workloads.py; it reaches fewer ids than the embedding holds). Each config
is its own `torchrun --standalone --nproc-per-node N` job (gloo on CPU, 2/N intra-op threads a rank), running
`rewardkit.training.loop.optimize` from a token store as the train stage does, fp32 or bf16 autocast (--precision),
AdamW, no checkpoints; with --nproc 1, "ddp" is one plain process. --dims qwen2-0.5b: Qwen2-0.5B's dims. Per
rank: RSS before the model is loaded, after the first optimizer step (the model part: weights, gradients and
AdamW state resident, activations freed) and the process's peak (ru_maxrss); tokens/s over the timed steps (real
tokens of both ranks); the RSS right after loading and the setup's peak (--load: fsdp's rank 0 reads the weights
and fills the other ranks' shards, as the train job does, or every rank reads them). Appends a dated section to
bench/RESULTS.md unless --no-record. bench.scale_targets runs the issue's targets (length 1024, TRL, LoRA quality,
Qwen2-0.5B) through `run_config`.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import system, workloads

CONFIGS = {  # name: train params beyond the common ones
    "ddp": {"strategy": "ddp"},
    "fsdp": {"strategy": "fsdp"},
    "ddp+ckpt": {"strategy": "ddp", "gradient_checkpointing": True},
    "fsdp+ckpt": {"strategy": "fsdp", "gradient_checkpointing": True},
    "ddp+lora16": {"strategy": "ddp", "lora": {"r": 16, "alpha": 16}},
    "fsdp+lora16+ckpt": {"strategy": "fsdp", "lora": {"r": 16, "alpha": 16}, "gradient_checkpointing": True},
}
SMOLLM2_135M = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                    num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rope_theta=100000.0,
                    tie_word_embeddings=True)
QWEN2_05B = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, max_position_embeddings=32768, rope_theta=1000000.0,
                 tie_word_embeddings=True)  # Qwen2-0.5B's published config.json
DIMS = {"smollm2-135m": ("llama", SMOLLM2_135M), "qwen2-0.5b": ("qwen2", QWEN2_05B)}


def decoder_base(train_data: Path, dims: str = "smollm2-135m") -> Path:
    """The classifier at `dims` (DIMS) and its BPE tokenizer (built once under bench/out/models)."""
    out = workloads.OUT / "models" / f"{dims}-{train_data.stem}"
    if (out / "config.json").exists():
        return out
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedTokenizerFast

    rows = workloads.read_jsonl(train_data)
    texts = list(dict.fromkeys(t for r in rows for t in (r["prompt"], r["chosen"], r["rejected"])))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=8000, special_tokens=["<|endoftext|>", "<|pad|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|pad|>")
    family, shape = DIMS[dims]
    config = AutoConfig.for_model(family, **shape, num_labels=1, pad_token_id=tokenizer.pad_token_id,
                                  eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    torch.manual_seed(workloads.SEED)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2 ** 20


def peak_rss_mb() -> float:
    """This process's peak RSS so far (ru_maxrss)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def local_mb(tensors) -> float:
    """MB held by `tensors` on this rank (a DTensor's local shard only)."""
    from torch.distributed.tensor import DTensor

    tensors = [t.to_local() if isinstance(t, DTensor) else t for t in tensors]
    return sum(t.numel() * t.element_size() for t in tensors if t is not None) / 2 ** 20


def watch_first_step(model, breakdown: dict) -> None:
    """Record, at the first optimizer step, the bytes this rank's parameters, gradients (before the step) and AdamW
    state (after it) hold, read from the live tensors, and the RSS at both points."""
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    def before(optimizer, *_):
        if "params_mb" not in breakdown:
            breakdown.update(params_mb=local_mb(model.parameters()), rss_before_step1_mb=rss_mb(),
                             grads_mb=local_mb(p.grad for p in model.parameters()))

    def after(optimizer, *_):
        if "optimizer_mb" not in breakdown:
            breakdown.update(optimizer_mb=local_mb(v for s in optimizer.state.values() for v in s.values()
                                                   if hasattr(v, "numel") and v.ndim > 0))
    register_optimizer_step_pre_hook(before)
    register_optimizer_step_post_hook(after)


def worker(config: str, base: Path, data: Path, out: Path, steps: int, warmup: int, batch: int,
           max_length: int, precision: str, load: str = "rank0") -> None:
    """One rank of one config (under torchrun): train, then write this rank's figures to out/rank-<r>.json.
    `load` (fsdp configs): "rank0", the train job's way (rank 0 reads the weights, the others build the model on
    the meta device and are filled from rank 0), or "every" (every rank reads the full model, then shards)."""
    import torch

    from rewardkit.config import TrainConfig
    from rewardkit.encoding.tokenization import store_rows
    from rewardkit.encoding.tokenizers import load_tokenizer
    from rewardkit.modeling.model import load_base
    from rewardkit.training import distributed, fsdp, fsdp_load, lora, memory
    from rewardkit.training.loop import optimize

    device = torch.device("cpu")
    ranks = distributed.setup(device)
    before = rss_mb()
    cfg = TrainConfig(max_length=max_length, batch_size=batch, epochs=1, lr=5e-5, scheduler="constant",
                      warmup_ratio=0.0, checkpoint_every=0, device="cpu", nproc_per_node=ranks.world,
                      precision=precision, seed=workloads.SEED, **CONFIGS[config])
    empty = cfg.strategy == "fsdp" and load == "rank0" and not ranks.is_main
    if empty:
        tokenizer = load_tokenizer(str(base))
        model = fsdp_load.empty_base(str(base), "cls", tokenizer)
    else:
        model, tokenizer = load_base(str(base), "cls", workloads.SEED)
    breakdown = {"rss_after_load_mb": rss_mb()}
    if cfg.lora_settings().r:
        lora.apply_lora(model, cfg.lora_settings())
    if cfg.gradient_checkpointing:
        memory.enable_activation_checkpointing(model)
    if cfg.strategy == "fsdp" and load == "rank0":
        fsdp_load.shard_from_rank0(model, device, ranks, bf16=precision == "bf16")
    elif cfg.strategy == "fsdp":
        fsdp.shard(model, device, ranks, bf16=precision == "bf16")
    breakdown.update(rss_after_setup_mb=rss_mb(), setup_peak_rss_mb=peak_rss_mb())
    watch_first_step(model, breakdown)
    stamps: list[tuple[float, int, float, float]] = []

    def after_step() -> tuple[float, float]:  # RSS, then RSS once freed memory is handed back (what is live)
        raw = rss_mb()
        memory.release_freed_memory(device)
        return raw, rss_mb()

    with tempfile.TemporaryDirectory() as work:
        rows = workloads.read_jsonl(data)[:(steps + warmup) * batch]
        pairs = store_rows(rows, Path(work) / "store", tokenizer, model.hf.config, max_length)
        optimize(model, pairs, cfg, device, ranks, tokenizer.pad_token_id, Path(work) / "ckpt",
                 on_step=lambda r: stamps.append((time.perf_counter(), r["tokens"], *after_step())))
    timed = stamps[warmup - 1:warmup + steps]
    result = {"config": config, "rank": ranks.rank, "rss_before_mb": before, "rss_after_step1_mb": stamps[0][3],
              "rss_after_step1_untrimmed_mb": stamps[0][2],
              "peak_rss_mb": peak_rss_mb(), "load": load,
              "tokens": sum(n for _, n, *_ in timed[1:]), "seconds": timed[-1][0] - timed[0][0],
              "trainable": lora.trainable_parameters(model)[0], "pairs": len(pairs), **breakdown}
    (out / f"rank-{ranks.rank}.json").write_text(json.dumps(result))
    distributed.cleanup(ranks)


def run_config(config: str, base: Path, data: Path, args, log_dir: Path) -> list[dict]:
    """Run `config` as one torchrun job of args.nproc ranks (the machine's 2 cores split between them); return
    each rank's figures."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.nproc),
               "-m", "bench.fsdp_scale", "worker", config, str(base), str(data), out, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch", str(args.batch), "--max-length", str(args.max_length),
               "--precision", args.precision, "--load", getattr(args, "load", "rank0")]  # scale_targets has none
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, 2 // args.nproc)), "PYTHONPATH": str(workloads.ROOT)}
        log = log_dir / f"{config}.log"
        with open(log, "wb") as f:
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
        if code:
            raise SystemExit(f"{config} failed (exit {code}); see {log}")
        return [json.loads((Path(out) / f"rank-{r}.json").read_text()) for r in range(args.nproc)]


def table(results: dict[str, list[dict]]) -> list[str]:
    lines = ["| config | tokens/s (all ranks) | peak RSS per rank MB | model part per rank MB (after step 1 - before "
             "load) | vs ddp | trainable params |", "|---|---|---|---|---|---|"]
    model_part = {c: max(r["rss_after_step1_mb"] - r["rss_before_mb"] for r in rs) for c, rs in results.items()}
    for config, ranks in results.items():
        rate = sum(r["tokens"] for r in ranks) / max(r["seconds"] for r in ranks)
        ratio = model_part[config] / model_part["ddp"] if "ddp" in model_part else float("nan")
        peaks = " / ".join(f"{r['peak_rss_mb']:.0f}" for r in ranks)
        lines.append(f"| {config} | {rate:.0f} | {peaks} | "
                     f"{model_part[config]:.0f} | {ratio:.2f}x | {ranks[0]['trainable']:,} |")
    return lines


def breakdown_table(results: dict[str, list[dict]]) -> list[str]:
    """Per rank, what the live tensors hold at the first step against the RSS the process shows."""
    lines = ["| config | rank | params MB | grads MB | AdamW state MB | sum | RSS after setup - before load MB | "
             "RSS at step 1 (grads live) - before load MB | model part (after step 1) MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for config, ranks in results.items():
        for r in ranks:
            held = r["params_mb"] + r["grads_mb"] + r["optimizer_mb"]
            lines.append(f"| {config} | {r['rank']} | {r['params_mb']:.0f} | {r['grads_mb']:.0f} | "
                         f"{r['optimizer_mb']:.0f} | {held:.0f} | {r['rss_after_setup_mb'] - r['rss_before_mb']:.0f} "
                         f"| {r['rss_before_step1_mb'] - r['rss_before_mb']:.0f} | "
                         f"{r['rss_after_step1_mb'] - r['rss_before_mb']:.0f} |")
    return lines


def setup_table(results: dict[str, list[dict]]) -> list[str]:
    """Per rank, the RSS before the model, right after loading (or building it empty) and the setup's peak."""
    lines = ["| config | load | rank | RSS before load MB | after load MB | setup peak RSS MB |",
             "|---|---|---|---|---|---|"]
    for config, ranks in results.items():
        for r in ranks:
            lines.append(f"| {config} | {r['load']} | {r['rank']} | {r['rss_before_mb']:.0f} | "
                         f"{r['rss_after_load_mb']:.0f} | {r['setup_peak_rss_mb']:.0f} |")
    return lines


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """How each config runs: processes, precision, the model's dims (or a model directory)."""
    parser.add_argument("--nproc", type=int, choices=(1, 2), default=2)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--dims", choices=list(DIMS), default="smollm2-135m")
    parser.add_argument("--model", type=Path, help="a decoder classifier directory (default: built at --dims)")
    parser.add_argument("--load", choices=("rank0", "every"), default="rank0",
                        help="fsdp: rank 0 reads the weights and fills the others' shards, or every rank reads them")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    add_run_options(parser)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    train, _ = workloads.bench_data()
    base = args.model or decoder_base(train, args.dims)
    log_dir = workloads.OUT / "fsdp_scale"
    log_dir.mkdir(parents=True, exist_ok=True)
    load = system.load_1min()
    results = {config: run_config(config, base, train, args, log_dir) for config in args.configs}
    lines = [*table(results), "", *breakdown_table(results), "", *setup_table(results)]
    print("\n".join(lines))
    if not args.no_record:
        import datetime

        system.record([f"## {datetime.date.today()}: model-scale, SmolLM2-135M dims, 2 CPU processes (#25)", "",
                       f"`python -m bench.fsdp_scale {' '.join(sys.argv[1:])}` on {system.machine()}, load "
                       f"{load:.2f} at start; steps {args.steps} timed after {args.warmup}, batch {args.batch} "
                       f"pairs, max length {args.max_length}, {args.precision}, {args.nproc} processes.", "",
                       *lines, ""])


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        p = argparse.ArgumentParser()
        p.add_argument("mode")
        p.add_argument("config")
        p.add_argument("base", type=Path)
        p.add_argument("data", type=Path)
        p.add_argument("out", type=Path)
        for flag in ("--steps", "--warmup", "--batch", "--max-length"):
            p.add_argument(flag, type=int)
        p.add_argument("--precision")
        p.add_argument("--load", default="rank0")
        a = p.parse_args()
        worker(a.config, a.base, a.data, a.out, a.steps, a.warmup, a.batch, a.max_length, a.precision, a.load)
    else:
        main()
