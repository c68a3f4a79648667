"""The optimisation loop of the train stage: length-grouped Bradley–Terry steps, resumable, the same under DDP.

One optimizer step = `train.batch_size` pairs, split over processes and accumulation steps; each micro-batch is
ONE forward over its chosen and rejected sequences stacked together (rows [0, b) chosen, [b, 2b) rejected).
"""
from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_scheduler

from rewardkit import checkpoint, distributed, preemption
from rewardkit.batching import length_grouped_batches, pad_batch
from rewardkit.config import TrainConfig
from rewardkit.devices import autocast
from rewardkit.distributed import Ranks
from rewardkit.encoding import TrainingPairs
from rewardkit.errors import UserError
from rewardkit.losses import bt_loss_per_pair
from rewardkit.metrics import pair_correct


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases and LayerNorm weights), fused on CUDA and CPU
    (one kernel over all parameters instead of several elementwise passes each)."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, fused=device.type in ("cuda", "cpu"))


def steps_for(n_pairs: int, cfg: TrainConfig) -> int:
    """Optimizer steps of a run: train.epochs over n_pairs in batches of train.batch_size (the last one smaller),
    or train.max_steps when that is set and fewer. The learning-rate schedule spans exactly these steps."""
    total = -(-n_pairs // cfg.batch_size) * cfg.epochs
    return min(total, cfg.max_steps) if cfg.max_steps else total


def diverged(step: int, loss: float, grad_norm: float, cfg: TrainConfig, device: torch.device) -> UserError:
    precision = "bf16 autocast on CUDA" if device.type == "cuda" else "fp32"
    return UserError(f"training diverged at step {step}: loss={loss}, grad norm={grad_norm} ({precision}). Likely "
                     f"causes: learning rate too high (train.lr={cfg.lr}), too short a warm-up "
                     f"(train.warmup_ratio={cfg.warmup_ratio}), or bad margins in the data. No model was written.")


def optimize(model, pairs: TrainingPairs, cfg: TrainConfig, device: torch.device, ranks: Ranks, pad_id: int,
             ckpt_dir: Path, on_step: Callable[[dict], None] | None = None,
             validate: Callable[[], dict] | None = None) -> list[dict]:
    """Train `model` in place; returns the per-step curve. Resumes from `ckpt_dir` when a checkpoint is there.

    `on_step`, when given, is called right after each optimizer step with its curve record plus "tokens", the real
    (non-pad) tokens this process's forwards of that step read (the benchmark times steps with it).
    `validate`, when given, is called on rank 0 every train.eval_every steps and after the last one, the model in
    eval mode; what it returns (val_loss, val_accuracy) joins that step's curve record.

    SIGTERM or SIGINT: the step under way is finished, a checkpoint is written (whatever train.checkpoint_every),
    then `preemption.Stopped` is raised, on every rank after the same step.
    """
    with preemption.StopOnSignal() as stop:
        return _optimize(model, pairs, cfg, device, ranks, pad_id, ckpt_dir, on_step, validate, stop)


def _optimize(model, pairs: TrainingPairs, cfg: TrainConfig, device: torch.device, ranks: Ranks, pad_id: int,
              ckpt_dir: Path, on_step: Callable[[dict], None] | None, validate: Callable[[], dict] | None,
              stop: preemption.StopOnSignal) -> list[dict]:
    lengths = pairs.lengths()
    steps_per_epoch = -(-len(lengths) // cfg.batch_size)
    total = steps_for(len(lengths), cfg)
    optimizer = make_optimizer(model, cfg, device)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=round(cfg.warmup_ratio * total),
                              num_training_steps=total)
    step, curve = 0, []
    state = checkpoint.resume(ckpt_dir, device, ranks)  # even with checkpoint_every=0: a stop writes one
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"])
        step, curve = state["step"], state["curve"]
        if ranks.is_main:
            print(f"resuming from the checkpoint at step {step}/{total} in {ckpt_dir}", file=sys.stderr)
    if not distributed.same_on_all_ranks(step, ranks):  # else ranks would run different steps and hang or worse
        raise UserError(f"the training processes found different checkpoints in {ckpt_dir}: on several nodes the "
                        "project directory (.scratch included) must be on a filesystem they all share")

    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                    else None) if ranks.world > 1 else model
    forward = torch.compile(ddp) if cfg.compile else ddp
    multiple = 64 if cfg.compile else 8  # fixed length buckets bound torch.compile's recompiles
    parts = ranks.world * cfg.grad_accum_steps
    margin = torch.from_numpy(np.asarray(pairs.margin, dtype=np.float32))
    bar = tqdm(total=total, initial=step, desc="train", unit="step", disable=not ranks.is_main, dynamic_ncols=True)
    t0, pairs_done = time.perf_counter(), 0
    model.train()
    for epoch in range(-(-total // steps_per_epoch)):  # fewer epochs when train.max_steps stops earlier
        for i, batch in enumerate(length_grouped_batches(lengths, cfg.batch_size, cfg.seed, epoch)):
            if epoch * steps_per_epoch + i >= total:
                break
            if epoch * steps_per_epoch + i < step:
                continue  # done before the interruption; the order itself is a pure function of (seed, epoch)
            sums = torch.zeros(2, dtype=torch.float64)  # loss, correct pairs (this rank)
            tokens = 0
            micro = np.array_split(batch, parts)[ranks.rank * cfg.grad_accum_steps:
                                                 (ranks.rank + 1) * cfg.grad_accum_steps]
            for k, mb in enumerate(micro):
                # Every rank runs every micro-step (DDP needs all ranks in each backward); an empty slice of the
                # last batch runs one pair with weight 0. `world / len(batch)` makes DDP's mean over ranks the
                # exact mean over the global batch whatever the slice sizes.
                weight = ranks.world / len(batch) if len(mb) else 0.0
                mb = mb if len(mb) else batch[:1]
                sequences, segments = pairs.sequences(mb)
                tokens += sum(map(len, sequences))
                batch_inputs = pad_batch(sequences, pad_id, multiple, segments).to(device)
                sync = nullcontext() if k == len(micro) - 1 or ranks.world == 1 else ddp.no_sync()
                with sync:
                    with autocast(device):
                        rewards = forward(*batch_inputs).float()  # (2b,): chosen then rejected
                    chosen, rejected = rewards[:len(mb)], rewards[len(mb):]
                    per_pair = bt_loss_per_pair(chosen, rejected, margin[mb].to(device), cfg.center_rewards_coef)
                    (per_pair.sum() * weight).backward()
                if weight:
                    sums += torch.stack([per_pair.detach().sum(), pair_correct(chosen, rejected).sum()]).cpu()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or float("inf"))
            loss_sum, correct = distributed.all_reduce_sum(sums, ranks).tolist()
            loss, grad_norm = loss_sum / len(batch), float(grad_norm)
            if not (np.isfinite(loss) and np.isfinite(grad_norm)):
                bar.close()  # the message goes on a line of its own
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
            if validate is not None and cfg.eval_every and (step % cfg.eval_every == 0 or step == total):
                if ranks.is_main:
                    model.eval()
                    curve[-1].update(validate())
                    model.train()
                distributed.barrier(ranks)
            if on_step is not None:
                on_step({**curve[-1], "tokens": tokens})
            stop_signal = stop.agreed(ranks)  # a collective: every rank stops after the same step
            if stop_signal:
                bar.close()  # before the barrier below: the bar's last state comes before any rank's message
            if stop_signal or cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < total:
                if ranks.is_main:
                    checkpoint.save(ckpt_dir, step=step, model=model, optimizer=optimizer, scheduler=scheduler,
                                    curve=curve)
                distributed.barrier(ranks)
            if stop_signal:
                raise preemption.Stopped(stop_signal, step, total, ckpt_dir)
    bar.close()
    return curve
