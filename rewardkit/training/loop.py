"""The optimisation loop of the train stage: length-grouped Bradley–Terry steps, resumable, the same under DDP.

One optimizer step = `train.batch_size` pairs, split over processes and accumulation steps; each micro-batch is
ONE forward over its chosen and rejected sequences stacked together (rows [0, b) chosen, [b, 2b) rejected).
The loop, `optimize`, reads top to bottom; each part of a step is a function below it.
"""
from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_scheduler

from rewardkit.config import TrainConfig
from rewardkit.encoding.store import PairSubset, TokenStore
from rewardkit.errors import UserError
from rewardkit.modeling.batching import length_grouped_batches
from rewardkit.modeling.devices import autocast, resolve_precision, to_device
from rewardkit.modeling.objective import bt_loss_per_pair, pair_correct
from rewardkit.modeling.packing import batch_for
from rewardkit.training import checkpoint, distributed, fsdp, preemption, sharded_checkpoint
from rewardkit.training.distributed import Ranks

Pairs = TokenStore | PairSubset


@dataclass
class TrainState:
    """What the loop advances and a checkpoint holds: the model, its optimizer and schedule, the steps done so far
    and their curve records."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    step: int = 0
    curve: list[dict] = field(default_factory=list)


def optimize(model, pairs: Pairs, cfg: TrainConfig, device: torch.device, ranks: Ranks, pad_id: int,
             ckpt_dir: Path, on_step: Callable[[dict], None] | None = None,
             validate: Callable[[], dict] | None = None,
             on_resume: Callable[[list[dict]], None] | None = None) -> list[dict]:
    """Train `model` in place; returns the per-step curve. Resumes from `ckpt_dir` when a checkpoint is there.

    `on_step`, when given, is called right after each optimizer step with its curve record plus "tokens", the real
    (non-pad) tokens this process's forwards of that step read (the benchmark times steps with it).
    `validate`, when given, is called every train.eval_every steps and after the last one, the model in eval mode,
    on rank 0 (on every rank when the model is sharded: each forward gathers weights from all of them); what rank
    0's call returns (val_loss, val_accuracy) joins that step's curve record.
    `on_resume`, when given, is called once with the curve records a resumed checkpoint restored (the train stage's
    dvclive log writes them again).

    SIGTERM or SIGINT: the step under way is finished, a checkpoint is written (whatever train.checkpoint_every),
    then `preemption.Stopped` is raised, on every rank after the same step.
    """
    lengths = pairs.lengths()
    total = steps_for(len(lengths), cfg)
    optimizer = make_optimizer(model, cfg, device)
    scheduler = get_scheduler(cfg.scheduler, optimizer, num_warmup_steps=round(cfg.warmup_ratio * total),
                              num_training_steps=total)
    state = TrainState(model, optimizer, scheduler)
    with preemption.StopOnSignal() as stop:
        resume(state, ckpt_dir, ranks, total)  # even with checkpoint_every=0: a stop writes one
        if on_resume is not None and state.curve:
            on_resume(state.curve)
        ddp, forward = wrap_model(model, cfg, device, ranks)
        margin = torch.from_numpy(np.asarray(pairs.margin, dtype=np.float32))
        started, pairs_done = time.perf_counter(), 0
        model.train()
        with tqdm(total=total, initial=state.step, desc="train", unit="step", disable=not ranks.is_main,
                  dynamic_ncols=True) as bar:
            for epoch, batch in batches_from(lengths, cfg, total, state.step):
                sums, tokens = accumulate_gradients(ddp, forward, pairs, batch, margin, cfg, device, ranks, pad_id)
                record, stop_signal = optimizer_step(state, sums, len(batch), cfg, device, ranks, stop)
                state.step += 1
                state.curve.append({"step": state.step, "epoch": epoch + 1, **record})
                pairs_done += len(batch)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}",
                                pairs_s=f"{pairs_done / (time.perf_counter() - started):.1f}")
                if validate is not None and cfg.eval_every and (state.step % cfg.eval_every == 0
                                                                or state.step == total):
                    run_validation(state, validate, ranks)
                if on_step is not None:
                    on_step({**state.curve[-1], "tokens": tokens})
                # one process needs no agreement: a signal that came during validation is honoured now
                checkpoint_or_stop(state, stop_signal if ranks.world > 1 else stop.signum, bar, cfg, ranks,
                                   ckpt_dir, total)
    return state.curve


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


def resume(state: TrainState, ckpt_dir: Path, ranks: Ranks, total: int) -> None:
    """Load the newest good checkpoint into `state`, if there is one, the same one on every rank."""
    if fsdp.is_sharded(state.model):  # each rank reads its shards into the model and optimizer
        saved = sharded_checkpoint.resume(ckpt_dir, state.model, state.optimizer, ranks)
    else:
        saved = checkpoint.resume(ckpt_dir, ranks)  # on the CPU: load_state_dict moves it
        if saved is not None:
            state.model.load_state_dict(saved["model"])
            state.optimizer.load_state_dict(saved["optimizer"])
    if saved is not None:
        state.scheduler.load_state_dict(saved["scheduler"])
        checkpoint.set_rng_state(saved["rng"])
        state.step, state.curve = saved["step"], saved["curve"]
        if ranks.is_main:
            resharded = (f" (written by {saved['world']} processes, resharded for {ranks.world})"
                         if saved.get("world", ranks.world) != ranks.world else "")
            print(f"resuming from the checkpoint at step {state.step}/{total} in {ckpt_dir}{resharded}",
                  file=sys.stderr)
    if not distributed.same_on_all_ranks(state.step, ranks):  # else ranks would run different steps and hang
        raise UserError(f"the training processes found different checkpoints in {ckpt_dir}: on several nodes the "
                        "project directory (.scratch included) must be on a filesystem they all share")


def wrap_model(model: torch.nn.Module, cfg: TrainConfig, device: torch.device, ranks: Ranks):
    """(the module backward synchronises through, the callable that computes rewards): DDP over several processes
    (a model sharded with train.strategy=fsdp synchronises itself), torch.compile on top with train.compile."""
    if fsdp.is_sharded(model):
        ddp = model
    else:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                        else None) if ranks.world > 1 else model
    return ddp, torch.compile(ddp) if cfg.compile else ddp


def batches_from(lengths: np.ndarray, cfg: TrainConfig, total: int, done: int) -> Iterator[tuple[int, np.ndarray]]:
    """(epoch, batch of pair indices) of every optimizer step after the first `done`. The order is a pure function
    of (train.seed, epoch), so a resumed run continues exactly where it stopped."""
    steps_per_epoch = -(-len(lengths) // cfg.batch_size)
    for epoch in range(-(-total // steps_per_epoch)):  # fewer epochs when train.max_steps stops earlier
        for i, batch in enumerate(length_grouped_batches(lengths, cfg.batch_size, cfg.seed, epoch)):
            if epoch * steps_per_epoch + i >= total:
                return
            if epoch * steps_per_epoch + i >= done:
                yield epoch, batch


def accumulate_gradients(ddp, forward, pairs: Pairs, batch: np.ndarray, margin: torch.Tensor, cfg: TrainConfig,
                         device: torch.device, ranks: Ranks, pad_id: int) -> tuple[torch.Tensor, int]:
    """Forward and backward over this rank's micro-batches of one step's batch. Returns this rank's (loss sum,
    correct pairs) as a float64 tensor on `device`, and the real tokens its forwards read.

    Nothing is read back from the device here: the sums stay on it (read once per step, in `optimizer_step`), the
    fast forwards get each row's length from the host, and inputs travel from pinned memory without a sync, so the
    host queues the next micro-step while the GPU runs this one."""
    multiple = 64 if cfg.compile else 8  # fixed length buckets bound torch.compile's recompiles
    sums, tokens = torch.zeros(2, dtype=torch.float64, device=device), 0
    micro = np.array_split(batch, ranks.world * cfg.grad_accum_steps)[ranks.rank * cfg.grad_accum_steps:
                                                                       (ranks.rank + 1) * cfg.grad_accum_steps]
    for k, mb in enumerate(micro):
        # Every rank runs every micro-step (DDP needs all ranks in each backward); an empty slice of the last
        # batch runs one pair with weight 0. `world / len(batch)` makes DDP's mean over ranks the exact mean over
        # the global batch whatever the slice sizes.
        weight = ranks.world / len(batch) if len(mb) else 0.0
        mb = mb if len(mb) else batch[:1]
        sequences, segments = pairs.sequences(mb)
        lengths = [len(s) for s in sequences]
        tokens += sum(lengths)
        inputs = batch_for(ddp, sequences, pad_id, multiple, segments).to(device)  # decoders: packed pairs
        # compiled graphs would guard on (and recompile for) the list's values; they read no lengths anyway
        known = {} if cfg.compile or inputs.attention_mask is None else {"lengths": lengths}
        sync = nullcontext() if k == len(micro) - 1 or ranks.world == 1 else fsdp.no_sync(ddp)
        with sync:
            with autocast(device, cfg.precision):
                rewards = forward(*inputs, **known).float()  # (2b,): chosen then rejected
            chosen, rejected = rewards[:len(mb)], rewards[len(mb):]
            per_pair = bt_loss_per_pair(chosen, rejected, to_device(margin[mb], device), cfg.center_rewards_coef)
            (per_pair.sum() * weight).backward()
        if weight:
            sums += torch.stack([per_pair.detach().sum(), pair_correct(chosen, rejected).sum()])
    return sums, tokens


def optimizer_step(state: TrainState, sums: torch.Tensor, n_pairs: int, cfg: TrainConfig, device: torch.device,
                   ranks: Ranks, stop: preemption.StopOnSignal) -> tuple[dict, int]:
    """Clip the gradient, stop on a non-finite loss or gradient, take the step. Returns the step's curve values
    (loss and accuracy over the global batch, the learning rate it used) and, with several ranks, the stop signal
    they all agreed on (0: go on). The step's one read of the device: (loss sum, correct pairs, the ranks' stop
    requests, gradient norm) together; the requests ride in the all-reduce of the sums: no extra collective."""
    clip = fsdp.clip_grad_norm if fsdp.is_sharded(state.model) else torch.nn.utils.clip_grad_norm_
    grad_norm = clip(list(state.model.parameters()), cfg.max_grad_norm or float("inf"))
    requests = to_device(stop.request_counts(), device) if ranks.world > 1 else sums.new_zeros(0)
    reduced = distributed.all_reduce_sum(torch.cat([sums, requests]), ranks)  # on the device (NCCL: in place)
    loss_sum, correct, *counts, grad_norm = torch.cat([reduced, grad_norm.detach().double().view(1)]).tolist()
    stop_signal = stop.from_counts(counts) if ranks.world > 1 else 0  # one process: read after the step
    loss = loss_sum / n_pairs
    if not (np.isfinite(loss) and np.isfinite(grad_norm)):
        raise diverged(state.step + 1, loss, grad_norm, cfg, device)
    lr = state.scheduler.get_last_lr()[0]
    state.optimizer.step()
    state.scheduler.step()
    state.optimizer.zero_grad(set_to_none=True)
    return {"loss": loss, "accuracy": correct / n_pairs, "lr": lr}, stop_signal


def diverged(step: int, loss: float, grad_norm: float, cfg: TrainConfig, device: torch.device) -> UserError:
    precision = {"bf16": f"bf16 autocast on {device.type}", "fp32": "fp32"}[resolve_precision(cfg.precision, device)]
    return UserError(f"training diverged at step {step}: loss={loss}, grad norm={grad_norm} ({precision}). Likely "
                     f"causes: learning rate too high (train.lr={cfg.lr}), too short a warm-up "
                     f"(train.warmup_ratio={cfg.warmup_ratio}), or bad margins in the data. No model was written.")


def run_validation(state: TrainState, validate: Callable[[], dict], ranks: Ranks) -> None:
    """Rank 0 scores the validation slice in eval mode and adds it to this step's record; the others wait, or,
    when the model is sharded, run the same forwards beside it (FSDP's all-gathers need every rank)."""
    if ranks.is_main or fsdp.is_sharded(state.model):
        state.model.eval()
        metrics = validate()
        state.model.train()
        if ranks.is_main:
            state.curve[-1].update(metrics)
    distributed.barrier(ranks)


def checkpoint_or_stop(state: TrainState, stop_signal: int, bar: tqdm, cfg: TrainConfig, ranks: Ranks,
                       ckpt_dir: Path, total: int) -> None:
    """Write a checkpoint every train.checkpoint_every steps (not after the last) and on the stop signal the ranks
    agreed on in `optimizer_step`, which every rank honours after the same step: then `preemption.Stopped` is
    raised."""
    if stop_signal:
        bar.close()  # before the barrier below: the bar's last state comes before any rank's message
    if stop_signal or cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0 and state.step < total:
        if fsdp.is_sharded(state.model):  # every rank writes its shards
            sharded_checkpoint.save(ckpt_dir, ranks, step=state.step, model=state.model, optimizer=state.optimizer,
                                    scheduler=state.scheduler, curve=state.curve)
        elif ranks.is_main:
            checkpoint.save(ckpt_dir, step=state.step, model=state.model, optimizer=state.optimizer,
                            scheduler=state.scheduler, curve=state.curve)
        distributed.barrier(ranks)
    if stop_signal:
        raise preemption.Stopped(stop_signal, state.step, total, ckpt_dir)
