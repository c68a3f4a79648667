"""train stage: fine-tune a Bradley–Terry reward model on data/train.jsonl.

Writes models/reward_model/ (save_pretrained + reward_model.json), metrics/train.json and
metrics/train_curve.csv. One optimizer step = `train.batch_size` pairs, split over processes and
accumulation steps; each micro-batch is ONE forward over its chosen and rejected sequences stacked together.
"""
from __future__ import annotations

import csv
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_scheduler

from stages import checkpoint, distributed
from stages.batching import length_grouped_batches, pad
from stages.common import UserError, atomic_path, file_sha256, read_jsonl, round_floats, run_main, write_json
from stages.config import SCRATCH_BASES, ModelConfig, TrainConfig, load
from stages.encoding import TRUNCATION_POLICY, EncodedPairs, encode_pairs
from stages.losses import bt_loss_per_pair, pair_correct
from stages.modeling import autocast, build_scratch, load_base, save_artifact, score_ids

TRAIN_DATA = Path("data/train.jsonl")
MODEL_DIR = Path("models/reward_model")
METRICS = Path("metrics/train.json")
CURVE = Path("metrics/train_curve.csv")


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no CUDA device is visible; use train.device=auto or cpu")
    return torch.device("cuda" if name in ("auto", "cuda") and torch.cuda.is_available() else "cpu")


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases and LayerNorm weights), fused on CUDA and CPU
    (one kernel over all parameters instead of ~10 passes of elementwise ops each; ~5% of a CPU step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=device.type in ("cuda", "cpu"))


def diverged(step: int, loss: float, grad_norm: float, cfg: TrainConfig, device: torch.device) -> UserError:
    precision = "bf16 autocast on CUDA" if device.type == "cuda" else "fp32"
    return UserError(f"training diverged at step {step}: loss={loss}, grad norm={grad_norm} ({precision}). Likely "
                     f"causes: learning rate too high (train.lr={cfg.lr}), too short a warm-up "
                     f"(train.warmup_ratio={cfg.warmup_ratio}), or bad margins in the data. No model was written.")


def train_steps(model, enc: EncodedPairs, cfg: TrainConfig, device, d: distributed.Dist, pad_id: int,
                ckpt_dir: Path, on_step: Callable[[dict], None] | None = None) -> list[dict]:
    """The optimisation loop; returns the per-step curve. Resumes from `ckpt_dir` when a checkpoint is there.

    `on_step`, when given, is called with each step's curve record right after that optimizer step (the
    benchmark times steps with it)."""
    lengths = np.maximum([len(c) for c in enc.chosen], [len(r) for r in enc.rejected])
    steps_per_epoch = -(-len(lengths) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    optimizer = make_optimizer(model, cfg, device)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=round(cfg.warmup_ratio * total),
                              num_training_steps=total)
    step, curve = 0, []
    state = checkpoint.load(ckpt_dir, device) if cfg.checkpoint_every else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"])
        step, curve = state["step"], state["curve"]
        if d.is_main:
            print(f"resuming from the checkpoint at step {step}/{total} in {ckpt_dir}", file=sys.stderr)
    if not distributed.same_on_all_ranks(step, d):  # else ranks would run different steps and hang or worse
        raise UserError(f"the training processes found different checkpoints in {ckpt_dir}: on several nodes the "
                        "project directory (.scratch included) must be on a filesystem they all share")

    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                    else None) if d.world > 1 else model
    forward = torch.compile(ddp) if cfg.compile else ddp
    multiple = 64 if cfg.compile else 8  # fixed length buckets bound torch.compile's recompiles
    parts = d.world * cfg.grad_accum_steps
    margin = torch.tensor(enc.margin, dtype=torch.float32)
    bar = tqdm(total=total, initial=step, desc="train", unit="step", disable=not d.is_main, dynamic_ncols=True)
    t0, pairs_done = time.perf_counter(), 0
    model.train()
    for epoch in range(cfg.epochs):
        for i, batch in enumerate(length_grouped_batches(lengths, cfg.batch_size, cfg.seed, epoch)):
            if epoch * steps_per_epoch + i < step:
                continue  # done before the interruption; the order itself is a pure function of (seed, epoch)
            sums = torch.zeros(2, dtype=torch.float64)  # loss, correct pairs (this rank)
            micro = np.array_split(batch, parts)[d.rank * cfg.grad_accum_steps:(d.rank + 1) * cfg.grad_accum_steps]
            for k, mb in enumerate(micro):
                # Every rank runs every micro-step (DDP needs all ranks in each backward); an empty slice of the
                # last batch runs one pair with weight 0. `world / len(batch)` makes DDP's mean over ranks the
                # exact mean over the global batch whatever the slice sizes.
                weight = d.world / len(batch) if len(mb) else 0.0
                mb = mb if len(mb) else batch[:1]
                ids, mask = pad([enc.chosen[j] for j in mb] + [enc.rejected[j] for j in mb], pad_id, multiple)
                if device.type == "cuda":
                    ids, mask = ids.pin_memory(), mask.pin_memory()
                ids, mask = ids.to(device, non_blocking=True), mask.to(device, non_blocking=True)
                sync = nullcontext() if k == len(micro) - 1 or d.world == 1 else ddp.no_sync()
                with sync:
                    with autocast(device):
                        rewards = forward(ids, mask).float()  # (2b,): chosen then rejected
                    chosen, rejected = rewards[:len(mb)], rewards[len(mb):]
                    per_pair = bt_loss_per_pair(chosen, rejected, margin[mb].to(device), cfg.center_rewards_coef)
                    (per_pair.sum() * weight).backward()
                if weight:
                    sums += torch.stack([per_pair.detach().sum(), pair_correct(chosen, rejected).sum()]).cpu()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or float("inf"))
            loss_sum, correct = distributed.all_reduce_sum(sums, d).tolist()
            loss, grad_norm = loss_sum / len(batch), float(grad_norm)
            if not (np.isfinite(loss) and np.isfinite(grad_norm)):
                raise diverged(step + 1, loss, grad_norm, cfg, device)
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            curve.append({"step": step, "epoch": epoch + 1, "loss": loss, "accuracy": correct / len(batch), "lr": lr})
            pairs_done += len(batch)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", pairs_s=f"{pairs_done / (time.perf_counter() - t0):.1f}")
            if on_step is not None:
                on_step(curve[-1])
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
                if d.is_main:
                    checkpoint.save(ckpt_dir, step=step, model=model, optimizer=optimizer, scheduler=scheduler,
                                    curve=curve)
                distributed.barrier(d)
    bar.close()
    return curve


def write_curve(curve: list[dict]) -> None:
    with atomic_path(CURVE) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "epoch", "loss", "accuracy", "lr"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(round_floats(curve, 8))


def main(model_cfg: ModelConfig, cfg: TrainConfig) -> None:
    device = resolve_device(cfg.device)  # before a relaunch: a bad device is reported once, not by every rank
    if cfg.nproc_per_node > 1 and not distributed.under_torchrun():
        sys.exit(distributed.relaunch_under_torchrun(cfg.nproc_per_node, "stages.train", device))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers outside autocast use TF32 tensor cores
        torch.backends.cudnn.allow_tf32 = True
    d = distributed.setup(device)
    if d.world > 1 and device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
    try:
        run(model_cfg, cfg, device, d)
    except RuntimeError as e:
        if d.world > 1 and distributed.lost_peer(e):
            raise UserError(distributed.LOST_PEER) from None
        raise
    finally:
        distributed.cleanup(d)


def run(model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device, d: distributed.Dist) -> None:
    if not TRAIN_DATA.is_file():
        raise UserError(f"{TRAIN_DATA} not found: run `dvc repro split` first")
    rows = list(read_jsonl(TRAIN_DATA))
    data_sha = file_sha256(TRAIN_DATA)
    key = checkpoint.run_key(data_sha, model_cfg, cfg)
    base = model_cfg.name
    if base in SCRATCH_BASES:  # random init + a SentencePiece tokenizer trained on the training split
        base_dir = checkpoint.SCRATCH / "base" / key
        if d.is_main:
            texts = list(dict.fromkeys(t for r in rows for t in (r["prompt"], r["chosen"], r["rejected"])))
            build_scratch(base, texts, model_cfg.scratch_vocab_size, base_dir, cfg.seed)
        distributed.barrier(d)
        base = str(base_dir)
    model, tokenizer = load_base(base, model_cfg.pooling, cfg.seed)
    model.to(device)
    enc = encode_pairs(tokenizer, rows, cfg.max_length, cfg.use_margin)
    if not enc.chosen:
        raise UserError(f"no pair of {TRAIN_DATA} is left to train on: all {len(rows)} became identical after "
                        f"truncation to train.max_length={cfg.max_length}; raise train.max_length")
    if d.is_main:
        print(f"training on {len(enc.chosen)} pairs ({enc.counts}) on {device} x{d.world}", file=sys.stderr)
    ckpt_dir = checkpoint.checkpoint_dir(key)
    curve = train_steps(model, enc, cfg, device, d, tokenizer.pad_token_id, ckpt_dir)
    if d.is_main:
        finish(model, tokenizer, enc, curve, model_cfg, cfg, device, data_sha)
        checkpoint.remove(ckpt_dir)
    # no barrier here: the other ranks may exit while rank 0 scores and saves, which on a large training set
    # can outlast NCCL's 10-minute collective timeout


def finish(model, tokenizer, enc: EncodedPairs, curve: list[dict], model_cfg: ModelConfig, cfg: TrainConfig,
           device: torch.device, data_sha: str) -> None:
    """Score the training pairs once with the final weights, then write the artifact and the metrics."""
    model.eval()
    n = len(enc.chosen)
    rewards = score_ids(model, enc.chosen + enc.rejected, tokenizer.pad_token_id, 4 * cfg.batch_size, device)
    chosen, rejected = rewards[:n], rewards[n:]
    train_loss = bt_loss_per_pair(chosen, rejected, torch.tensor(enc.margin)).mean().item()
    meta = {"base_model": model_cfg.name, "pooling": model_cfg.pooling, "max_length": cfg.max_length,
            "truncation": TRUNCATION_POLICY, "input_format": "tokenizer(prompt, response)",
            "data_sha256": data_sha, "reward_mean": rewards.mean().item(), "reward_std": rewards.std().item()}
    save_artifact(model, tokenizer, MODEL_DIR, round_floats(meta, 8))
    write_curve(curve)
    metrics = {"train_loss": train_loss, "train_accuracy": pair_correct(chosen, rejected).mean().item(),
               "last_step_loss": curve[-1]["loss"], "steps": len(curve), "epochs": cfg.epochs,
               "reward_mean": meta["reward_mean"], "reward_std": meta["reward_std"], **enc.counts}
    write_json(METRICS, round_floats(metrics))


if __name__ == "__main__":
    run_main(lambda: main(load(ModelConfig), load(TrainConfig)))
