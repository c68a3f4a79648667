"""#25's remaining targets, each part saved to bench/out/scale_targets/<part>.json, then one RESULTS.md section:

    python -m bench.scale_targets --parts ckpt trl lora qwen [--model DIR] [--steps 1] [--warmup 1] [--batch 8]
        [--max-length 1024] [--lora-steps 100] [--lora-lr 3e-4] [--seeds 0] [--qwen-batch 2] [--qwen-length 128]
    python -m bench.scale_targets --record        # one dated section from the saved parts

- ckpt: activation checkpointing at length 1024, batch 8 pairs, one process (2 threads), fp32: peak RSS and step
  time with and without it, and LoRA r=16 (bench.fsdp_scale's worker, our train loop from a token store).
- trl: TRL's RewardTrainer (bench/peers/trl_rm.py, as bench.decoders runs it) on the same decoder and rows at our
  settings (fp32, no checkpointing) and at its defaults (bf16, gradient checkpointing, lr 1e-4), against ours at
  the same precision and memory settings (fp32; bf16 autocast + checkpointing).
- lora: held-out accuracy of LoRA r=16 vs full fine-tuning after the same steps (bench.quality's tiny workload,
  steps, batch, lr and held-out pairs; our encoding), with the standard error of a difference of two accuracies.
- qwen: Qwen2-0.5B dims at 2 processes, fsdp, where the free RAM allows; ddp's per-rank model state computed
  (bench.memory_plan) and run only if it fits.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
from argparse import Namespace
from pathlib import Path

from bench import fsdp_scale, memory_plan, system, workloads

SAVED = workloads.OUT / "scale_targets"
PARTS = ("ckpt", "trl", "lora", "qwen")
RUN_MARGIN_MB = 2048  # a qwen run's activations and process baseline beyond its model state, roughly
TRL_DEFAULTS = ["--bf16", "--gradient-checkpointing", "--lr", "1e-4"]  # RewardConfig's own defaults


def ours(configs: list[str], model: Path, data: Path, a, precision: str = "fp32", nproc: int = 1,
         batch: int | None = None, length: int | None = None) -> dict:
    """bench.fsdp_scale's configs on `model` (batch and length: a's unless given); per config: tokens/s, s/step,
    peak RSS (max over ranks), trainable parameters, the model-state part."""
    args = Namespace(steps=a.steps, warmup=a.warmup, batch=batch or a.batch, max_length=length or a.max_length,
                     precision=precision, nproc=nproc)
    out = {}
    for config in configs:
        ranks = fsdp_scale.run_config(config, model, data, args, SAVED)
        seconds = max(r["seconds"] for r in ranks)
        out[config] = {"tokens_per_s": sum(r["tokens"] for r in ranks) / seconds, "s_per_step": seconds / a.steps,
                       "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks), "trainable": ranks[0]["trainable"],
                       "model_part_mb": max(r["rss_after_step1_mb"] - r["rss_before_mb"] for r in ranks),
                       "ranks": ranks}  # each rank's figures (peak, live params/grads/AdamW MB) for the report
        print(config, precision, out[config], flush=True)
    return out


def trl(model: Path, data: Path, a, extra: list[str], name: str) -> dict:
    """TRL's RewardTrainer through bench.decoders' runner; its tokens/s, s/step and peak RSS."""
    from bench import decoders

    result, rss = decoders.run([sys.executable, str(decoders.PEER), str(model), str(data), "--steps", str(a.steps),
                                "--warmup", str(a.warmup), "--batch", str(a.batch), "--max-length", str(a.max_length),
                                *extra], name)
    return {"tokens_per_s": result["tokens"] / (result["s_per_step"] * a.steps), "s_per_step": result["s_per_step"],
            "peak_rss_mb": rss, "kept_pairs": result["kept_pairs"], "settings": " ".join(extra) or "fp32"}


def lora_accuracy(model_dir: Path, data: Path, enc: tuple, steps: int, lr: float, seed: int, r: int) -> dict:
    """Train the tiny workload for `steps` x bench.quality.BATCH pairs (full fine-tuning when r = 0, else LoRA r
    with the head trained fully), merge, score the held-out pairs; accuracy and trainable parameters."""
    import torch

    from bench.quality import BATCH as Q_BATCH
    from bench.quality import MAX_LENGTH
    from rewardkit.config import TrainConfig
    from rewardkit.encoding.tokenization import store_rows
    from rewardkit.modeling.inference import score_sequences
    from rewardkit.modeling.model import load_base
    from rewardkit.modeling.objective import pair_correct
    from rewardkit.training import lora
    from rewardkit.training.distributed import Ranks
    from rewardkit.training.loop import optimize

    model, tokenizer = load_base(str(model_dir), "cls", seed)
    cfg = TrainConfig(max_length=MAX_LENGTH, batch_size=Q_BATCH, epochs=1, lr=lr, weight_decay=0.0,
                      scheduler="constant", warmup_ratio=0.0, checkpoint_every=0, device="cpu", seed=seed,
                      lora={"r": r, "alpha": 16})
    adapted = lora.apply_lora(model, cfg.lora_settings()) if r else None
    trainable = lora.trainable_parameters(model)
    cpu = torch.device("cpu")
    with tempfile.TemporaryDirectory() as work:
        pairs = store_rows(workloads.read_jsonl(data), Path(work) / "store", tokenizer, model.hf.config, MAX_LENGTH)
        optimize(model, pairs, cfg, cpu, Ranks(), tokenizer.pad_token_id, Path(work) / "ckpt")
    if adapted is not None:
        model.hf = adapted.merge_and_unload()
    chosen, rejected = enc
    rewards = score_sequences(model.eval(), chosen + rejected, tokenizer.pad_token_id, 64, cpu)
    return {"accuracy": pair_correct(rewards[:len(chosen)], rewards[len(chosen):]).mean().item(), "seed": seed,
            "trainable": trainable[0], "total": trainable[1], "held_out": len(chosen)}


def lora_part(a) -> dict:
    from bench.quality import BATCH as Q_BATCH
    from bench.quality import MAX_LENGTH
    from rewardkit.encoding.families import input_template
    from rewardkit.encoding.templates import encode_both_answers
    from rewardkit.modeling.model import load_base

    train, held_out = workloads.bench_data()
    model_dir = workloads.model_dir("tiny", train)
    data = workloads.first_rows(train, a.lora_steps * Q_BATCH)
    rows = workloads.read_jsonl(held_out)
    model, tokenizer = load_base(str(model_dir), "cls", 0)
    ids = encode_both_answers(tokenizer, rows, MAX_LENGTH, input_template(model.hf.config, tokenizer)).ids
    enc = (ids[:len(rows)], ids[len(rows):])
    saved = SAVED / "lora.json"  # a rerun of some ranks at another lr adds rows "r<r> lr<lr>" to the saved part
    out = json.loads(saved.read_text())["result"] if saved.exists() and a.lora_adapter_lr else {}
    for r in a.lora_ranks:
        lr = a.lora_adapter_lr if r and a.lora_adapter_lr else a.lora_lr
        key = f"r{r} lr{lr:g}" if a.lora_adapter_lr else f"r{r}"
        out[key] = [lora_accuracy(model_dir, data, enc, a.lora_steps, lr, s, r) for s in a.seeds]
        print(f"lora {key}", out[key], flush=True)
    return {"steps": a.lora_steps, "lr": a.lora_lr, "batch": Q_BATCH, "max_length": MAX_LENGTH, **out}


def qwen_part(a, train: Path) -> dict:
    """fsdp at 2 processes on Qwen2-0.5B dims when the free RAM holds it; ddp only if its computed need fits."""
    import psutil

    b = memory_plan.base("Qwen2.5-0.5B")  # the same dims as Qwen2-0.5B
    need = {s: memory_plan.model_state(b, s, "fp32", 2, False) / 2 ** 20 for s in ("ddp", "fsdp")}
    load = 4 * b.params / 2 ** 20  # each rank loads the full fp32 model before sharding
    free = psutil.virtual_memory().available / 2 ** 20
    out = {"params": b.params, "model_state_mb": need, "full_load_mb": load, "available_mb": free, "runs": {}}
    model = a.qwen_model or fsdp_scale.decoder_base(train, "qwen2-0.5b")
    data = workloads.first_rows(train, (a.steps + a.warmup) * a.qwen_batch)
    for strategy in ("fsdp", "ddp"):
        if 2 * (need[strategy] + load) + RUN_MARGIN_MB > free:
            out["runs"][strategy] = None
            continue
        out["runs"].update(ours([strategy], model, data, a, nproc=2, batch=a.qwen_batch, length=a.qwen_length))
    return {**out, "batch": a.qwen_batch, "max_length": a.qwen_length}


def run_parts(a) -> None:
    train, _ = workloads.bench_data()
    model = a.model or fsdp_scale.decoder_base(train)
    data = workloads.first_rows(train, (a.steps + a.warmup) * a.batch)
    SAVED.mkdir(parents=True, exist_ok=True)
    done: dict = {}  # the ckpt part's plain run is also ours at our settings for the trl part
    for part in a.parts:
        stamp = {"command": "python -m bench.scale_targets " + shlex.join(sys.argv[1:]), "date": str(
            datetime.date.today()), "load_start": system.load_1min(), "steps": a.steps, "warmup": a.warmup,
            "batch": a.batch, "max_length": a.max_length}
        if part == "ckpt":
            result = done = ours(["ddp", "ddp+ckpt", "ddp+lora16"], model, data, a)
        elif part == "trl":
            result = {}
            if "ours" in a.trl_runs:  # at our settings: fp32, no checkpointing
                result["ours fp32"] = done.get("ddp") or ours(["ddp"], model, data, a)["ddp"]
                result["trl fp32"] = trl(model, data, a, [], "trl-fp32")
            if "defaults" in a.trl_runs:  # at TRL's defaults: bf16, checkpointing
                result["ours bf16+ckpt"] = ours(["ddp+ckpt"], model, data, a, precision="bf16")["ddp+ckpt"]
                result["trl defaults"] = trl(model, data, a, TRL_DEFAULTS, "trl-defaults")
        elif part == "lora":
            result = lora_part(a)
        else:
            result = qwen_part(a, train)
        stamp["load_end"] = system.load_1min()
        (SAVED / f"{part}.json").write_text(json.dumps({**stamp, "result": result}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=[])
    parser.add_argument("--record", action="store_true", help="write one RESULTS.md section from the saved parts")
    parser.add_argument("--model", type=Path, help="a decoder classifier directory (default: SmolLM2-135M dims)")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8, help="pairs per step (ckpt, trl)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--lora-steps", type=int, default=100)
    parser.add_argument("--lora-lr", type=float, default=3e-4)
    parser.add_argument("--lora-ranks", type=int, nargs="+", default=[0, 16], help="0: full fine-tuning")
    parser.add_argument("--lora-adapter-lr", type=float, help="lr of the LoRA runs (default --lora-lr); the rows "
                        "are added to the saved lora part")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--trl-runs", nargs="+", choices=("ours", "defaults"), default=["ours", "defaults"],
                        help="the trl part at our settings, at TRL's defaults")
    parser.add_argument("--qwen-model", type=Path, help="a decoder directory standing in for Qwen2-0.5B dims")
    parser.add_argument("--qwen-batch", type=int, default=2)
    parser.add_argument("--qwen-length", type=int, default=128)
    a = parser.parse_args()
    if not a.parts and not a.record:
        parser.error("name --parts, --record or both")
    run_parts(a)
    if a.record:
        from bench.scale_report import section

        lines = section({p: json.loads((SAVED / f"{p}.json").read_text()) for p in PARTS
                         if (SAVED / f"{p}.json").exists()})
        print("\n".join(lines))
        system.record(lines)


if __name__ == "__main__":
    main()
