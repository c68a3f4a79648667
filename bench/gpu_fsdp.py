"""The GPU check's fsdp + LoRA step (#25): train.strategy=fsdp's code paths on the lent device, in one process.

    python -m bench.gpu_fsdp [--device cuda|cpu] [--steps 6] [--precision fp32|bf16]

One rank in a process group of one (NCCL on CUDA, gloo on CPU): FSDP2 still turns every weight into a DTensor shard
that only a unit's registered forward gathers, so the collectives, the bf16 mixed-precision policy (on a bf16
device) and the fast forwards' registered layer methods all run, as they would over several GPUs. For a tiny
DeBERTa-v3 (the fast forward) and a tiny Llama (transformers' forward), each with LoRA r=8 on every linear layer, the
head trained in full and activation checkpointing:
1. the sharded model's rewards equal an unsharded copy's (fp32 atol 1e-5; bf16: 2% of the largest);
2. `--steps` AdamW steps (clipped, as the loop clips sharded gradients) on a fixed batch lower its loss;
3. the model gathered to a plain copy (`fsdp.gather_plain`, LoRA skeleton included) scores as the sharded one.
Prints one JSON line ({"ok", "checks", "peak_gpu_memory_mb", ...}) and exits 1 when a check fails. Meant to be
run by bench/gpu_check.py as one of its checks (bench/gpucheck/fsdp_lora.py); tests/unit/test_gpu_fsdp.py
runs it on the CPU.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile

import torch
import torch.distributed as dist

from rewardkit.config import LoraSettings, TrainConfig
from rewardkit.modeling.devices import autocast, native_bf16
from rewardkit.modeling.model import RewardModel, disable_dropout
from rewardkit.modeling.objective import bt_loss_per_pair
from rewardkit.training import fsdp, lora
from rewardkit.training.distributed import Ranks
from rewardkit.training.job import skeleton
from rewardkit.training.loop import make_optimizer
from rewardkit.training.memory import enable_activation_checkpointing

LORA = {"r": 8, "alpha": 16}


def tiny(family: str) -> RewardModel:
    from transformers import (
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
        LlamaConfig,
        LlamaForSequenceClassification,
    )

    from rewardkit.encoding.scratch import DEBERTA_V3_SMALL

    torch.manual_seed(0)
    if family == "deberta":
        config = DebertaV2Config(**{**DEBERTA_V3_SMALL, "hidden_size": 64, "num_hidden_layers": 2,
                                    "num_attention_heads": 4, "intermediate_size": 256}, vocab_size=300,
                                 num_labels=1, pad_token_id=0)
        hf = DebertaV2ForSequenceClassification(config)
    else:
        config = LlamaConfig(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, vocab_size=300, num_labels=1, pad_token_id=0)
        hf = LlamaForSequenceClassification(config)
    disable_dropout(hf)
    model = RewardModel(hf, "cls")
    lora.apply_lora(model, LoraSettings(**LORA))
    enable_activation_checkpointing(model)
    return model


def pairs(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """8 right-padded sequences (4 chosen, then 4 rejected) of lengths 9-40, ids from a fixed seed."""
    gen = torch.Generator().manual_seed(1)
    lengths = [40, 17, 33, 9, 25, 38, 12, 30]
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(4, 300, (n,), generator=gen)
    return ids.to(device), (ids != 0).long().to(device)


def check_family(family: str, device: torch.device, precision: str, steps: int) -> dict:
    ranks = Ranks()
    model = tiny(family).to(device)
    plain = copy.deepcopy(model)
    fsdp.shard(model, device, ranks, bf16=precision == "bf16")
    ids, mask = pairs(device)
    with torch.no_grad(), autocast(device, precision):
        sharded, reference = model.eval()(ids, mask).float(), plain.eval()(ids, mask).float()
    tolerance = 1e-5 if precision == "fp32" else 0.02 * reference.abs().max().item()
    out = {"rewards_match": bool((sharded - reference).abs().max() <= tolerance)}

    model.train()
    optimizer = make_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.0), device)
    losses = []
    for _ in range(steps):
        with autocast(device, precision):
            rewards = model(ids, mask).float()
        loss = bt_loss_per_pair(rewards[:4], rewards[4:], torch.zeros(4, device=device)).mean()
        loss.backward()
        fsdp.clip_grad_norm(list(model.parameters()), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    out["loss_first_last"] = [round(losses[0], 5), round(losses[-1], 5)]
    out["loss_falls"] = losses[-1] < losses[0]

    with torch.no_grad(), autocast(device, precision):
        after = model.eval()(ids, mask).float()  # before gathering: on one rank the copy may alias the shards
    cfg = TrainConfig(lora=LORA)
    gathered, adapted = fsdp.gather_plain(model, ranks, lambda: skeleton(model, cfg))
    with torch.no_grad(), autocast(device, precision):
        copied = gathered.to(device).eval()(ids, mask).float()
    out["gathered_matches"] = bool((after - copied).abs().max() <= tolerance) and adapted is not None
    return out


def report(device_name: str, steps: int, precision: str | None = None) -> dict:
    """The checks' results ({"ok", "checks", ...}); `precision` (fp32 or bf16; default: bf16 on a device that
    computes it natively, else fp32)."""
    device = torch.device(device_name)
    if precision is None:
        precision = "bf16" if device.type == "cuda" and native_bf16(device) else "fp32"
    with tempfile.TemporaryDirectory() as store:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{store}/pg",
                                rank=0, world_size=1, device_id=device if device.type == "cuda" else None)
        try:
            checks = {family: check_family(family, device, precision, steps) for family in ("deberta", "llama")}
        finally:
            dist.destroy_process_group()
    ok = all(c["rewards_match"] and c["loss_falls"] and c["gathered_matches"] for c in checks.values())
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
    return {"ok": ok, "device": str(device), "precision": precision, "checks": checks, "peak_gpu_memory_mb": peak}


def main(device_name: str, steps: int, precision: str | None = None) -> int:
    """Print `report`'s result as one JSON line; 1 when a check failed."""
    result = report(device_name, steps, precision)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="default: bf16 on a CUDA device with bf16, else fp32")
    args = parser.parse_args()
    sys.exit(main(args.device, args.steps, args.precision))
