"""The train stage's job: fine-tune a Bradley–Terry reward model on the training split's token store and write the
artifact and the training metrics (one pass over the training pairs, or an even sample of train.stats_pairs of them,
with the final weights). The curve is logged through dvclive as training goes (`rewardkit.training.curve_log`)."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rewardkit.config import SCRATCH_BASES, ModelConfig, TrainConfig
from rewardkit.data.splitting import eval_cutoff
from rewardkit.encoding.families import input_template, is_decoder_only
from rewardkit.encoding.store import PairSubset, TokenStore
from rewardkit.encoding.templates import TRUNCATION_POLICY, PairTemplate
from rewardkit.encoding.tokenizers import load_saved_tokenizer, load_tokenizer
from rewardkit.errors import UserError
from rewardkit.io import directory_sha256, file_sha256, round_floats
from rewardkit.modeling.artifact import save_artifact
from rewardkit.modeling.devices import enable_tf32, resolve_device, resolve_precision
from rewardkit.modeling.inference import score_sequences
from rewardkit.modeling.model import RewardModel, disable_dropout, load_base
from rewardkit.modeling.objective import bt_loss_per_pair, pair_correct
from rewardkit.modeling.packing import pair_groups, unsupported_reason
from rewardkit.modeling.scratch import init_scratch_model
from rewardkit.training import checkpoint, distributed, fsdp, fsdp_load, launcher, lora, memory
from rewardkit.training.curve_log import CurveLog
from rewardkit.training.distributed import Ranks
from rewardkit.training.loop import optimize
from rewardkit.training.run_key import run_key


@dataclass(frozen=True)
class TrainPaths:
    store: Path
    """The training split's token store (the tokenize stage's output)."""
    tokenizer: Path
    """The tokenizer the stores were made with."""
    model_dir: Path
    live: Path
    """dvclive's directory: metrics.json (the summary), plots/metrics/*.tsv (per step), plots/custom/validation.json."""
    scratch: Path
    """Git-ignored working directory: scratch bases and resumable checkpoints."""


def train_stage(paths: TrainPaths, model_cfg: ModelConfig, cfg: TrainConfig, entry_module: str,
                argv: list[str]) -> int:
    """Run training in this process, or, with nproc_per_node > 1 outside torchrun, relaunch `python -m
    entry_module *argv` under torchrun; returns the exit code."""
    device = resolve_device(cfg.device)  # before a relaunch: a bad device is reported once, not by every rank
    fsdp.check_world(cfg.strategy, int(os.environ["WORLD_SIZE"]) if distributed.under_torchrun()
                     else cfg.nproc_per_node)
    if cfg.nproc_per_node > 1 and not distributed.under_torchrun():
        return launcher.relaunch_under_torchrun(cfg.nproc_per_node, entry_module, argv, device)
    enable_tf32(device)
    ranks = distributed.setup(device)
    if ranks.world > 1 and device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
    try:
        train_reward_model(paths, model_cfg, cfg, device, ranks)
    except RuntimeError as e:
        if ranks.world > 1 and distributed.lost_peer(e):
            raise UserError(distributed.LOST_PEER) from None
        raise
    finally:
        distributed.cleanup(ranks)
    return 0


def inputs_sha256(paths: TrainPaths, model_cfg: ModelConfig) -> str:
    """What the training data and the base are, for the checkpoint key: the store's description (the split's hash,
    the tokenizer's, the encoding) and, for a local base directory, its files."""
    parts = [file_sha256(paths.store / "store.json")]
    if os.path.isdir(model_cfg.name):
        parts.append(directory_sha256(model_cfg.name))
    return hashlib.sha256(":".join(parts).encode()).hexdigest()


def open_store(paths: TrainPaths, model_cfg: ModelConfig, cfg: TrainConfig) -> TokenStore:
    """The training store, checked against the params it must have been made with."""
    store = TokenStore(paths.store, use_margin=cfg.use_margin)
    made = store.meta
    if (made["base_model"], made["max_length"]) != (model_cfg.name, cfg.max_length):
        raise UserError(f"{paths.store} was tokenized for model.name={made['base_model']}, train.max_length="
                        f"{made['max_length']}, not {model_cfg.name} and {cfg.max_length}: run `dvc repro tokenize`")
    if not len(store):
        raise UserError(f"no pair is left to train on: all {made['pairs_read']} training pairs became identical "
                        f"after truncation to train.max_length={cfg.max_length}; raise train.max_length")
    return store


def train_reward_model(paths: TrainPaths, model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device,
                       ranks: Ranks) -> None:
    # auto resolved once: the run key, the loop, the scoring passes and the recorded metadata all see fp32 or bf16
    cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device))
    pairs = open_store(paths, model_cfg, cfg)
    key = run_key(inputs_sha256(paths, model_cfg), model_cfg, cfg)
    empty = cfg.strategy == "fsdp" and not ranks.is_main  # fsdp: filled from rank 0's weights once sharded
    model, tokenizer, adapted = prepare_model(paths, model_cfg, cfg, key, ranks, empty)
    if not empty:
        model.to(device)
    model.share_prefix = model.share_prefix and cfg.prefix_sharing == "auto" and not cfg.compile
    reason = unsupported_reason(model.hf)
    if ranks.is_main and cfg.prefix_sharing == "auto" and is_decoder_only(model.hf.config) and reason:
        print(f"prefix sharing off: {reason}; chosen and rejected run as padded sequences", file=sys.stderr)
    if cfg.strategy == "fsdp":
        fsdp_load.shard_from_rank0(model, device, ranks, bf16=cfg.precision == "bf16")
    template = input_template(model.hf.config, tokenizer)
    counts = {k: pairs.meta[k] for k in ("pairs_read", "pairs_used", "identical_after_truncation",
                                         "prompt_truncated", "response_truncated")}
    if ranks.is_main:
        shared = ", each pair's prompt computed once (prefix sharing)" if model.share_prefix else ""
        print(f"training on {len(pairs)} pairs ({counts}) on {device} x{ranks.world} in {cfg.precision}{shared}",
              file=sys.stderr)
    ckpt_dir = paths.scratch / "train" / key
    training, validation = carve_validation(pairs, cfg)
    validate = None if validation is None else (
        lambda: validation_metrics(model, validation, tokenizer.pad_token_id, 4 * cfg.batch_size, device,
                                   cfg.precision))
    log = CurveLog(paths.live) if ranks.is_main else None  # one writer under DDP and FSDP
    curve = optimize(model, training, cfg, device, ranks, tokenizer.pad_token_id, ckpt_dir, validate=validate,
                     on_step=log and log.on_step, on_resume=log and log.on_resume)
    if fsdp.is_sharded(model):  # every rank sends its shards; rank 0 scores and saves a plain copy, as with ddp
        model, adapted = fsdp.gather_plain(model, ranks, lambda: skeleton(model, cfg))
        model = model.to(device) if model is not None else None
    if ranks.is_main:
        adapter = None
        if adapted is not None:  # the adapter saved, then merged: the artifact is a plain classifier
            adapter = paths.scratch / "adapter" / key
            lora.release(model, adapted, adapter, model_cfg.name)
        metrics = write_outputs(paths, model, tokenizer, template, training, curve, model_cfg, cfg, device,
                                {**counts, **({"validation_pairs": len(validation)} if validation is not None else {})},
                                adapter)
        log.finish(metrics, len(curve))
        checkpoint.remove(ckpt_dir)
        if adapter is not None:
            shutil.rmtree(adapter)
    # no barrier here: the other ranks may exit while rank 0 scores and saves, which on a large training set
    # can outlast NCCL's 10-minute collective timeout


def prepare_model(paths: TrainPaths, model_cfg: ModelConfig, cfg: TrainConfig, key: str, ranks: Ranks,
                  empty: bool = False):
    """(the model to train, its tokenizer, peft's model or None): the base with a new head, LoRA adapters with
    train.lora, activation checkpointing with train.gradient_checkpointing. `empty`: the same model with its
    parameters on the meta device (rewardkit.training.fsdp_load), for rank 0's weights to fill."""
    if model_cfg.name in SCRATCH_BASES:  # random init for the tokenizer trained on the training split
        base_dir = paths.scratch / "base" / key
        if ranks.is_main:
            init_scratch_model(model_cfg.name, paths.tokenizer, base_dir, cfg.seed)
        distributed.barrier(ranks)
        name, tokenizer = str(base_dir), load_tokenizer(str(base_dir))
    else:
        name, tokenizer = model_cfg.name, load_saved_tokenizer(str(paths.tokenizer))
    if empty:
        model = fsdp_load.empty_base(name, model_cfg.pooling, tokenizer)
    else:
        model, tokenizer = load_base(name, model_cfg.pooling, cfg.seed, tokenizer)
    adapted = apply_lora(model, cfg, ranks)
    if cfg.gradient_checkpointing:
        memory.enable_activation_checkpointing(model)
    return model, tokenizer, adapted


def skeleton(model: RewardModel, cfg: TrainConfig) -> tuple[RewardModel, object]:
    """`model`'s architecture on the meta device (no memory), with its LoRA layers: what a gathered sharded model
    is loaded into. Returns it and peft's model (None without LoRA)."""
    with torch.device("meta"):
        hf = type(model.hf)(model.hf.config)
        disable_dropout(hf)
        plain = RewardModel(hf, model.pooling)
        plain.share_prefix = model.share_prefix
        adapted = lora.apply_lora(plain, cfg.lora_settings()) if cfg.lora_settings().r else None
    return plain, adapted


def apply_lora(model: RewardModel, cfg: TrainConfig, ranks: Ranks):
    """With train.lora.r > 0: adapters on the body, the head trained fully (rewardkit.training.lora); returns
    peft's model, or None."""
    settings = cfg.lora_settings()
    if not settings.r:
        return None
    adapted = lora.apply_lora(model, settings)
    if ranks.is_main:
        trainable, total = lora.trainable_parameters(model)
        print(f"LoRA r={settings.r}: training {trainable:,} of {total:,} parameters "
              f"({100 * trainable / total:.2f}%; the head in full)", file=sys.stderr)
    return adapted


def carve_validation(pairs: TokenStore, cfg: TrainConfig) -> tuple[TokenStore | PairSubset, PairSubset | None]:
    """(training pairs, validation pairs): with train.eval_every, about train.validation_fraction of the training
    split's pairs, whole prompts at a time (the prompts with the smallest keys), are kept out of training to
    validate on; without it, every pair is trained on. The eval split plays no part."""
    if not cfg.eval_every:
        return pairs, None
    keys = pairs.columns("prompt_key")["prompt_key"].to_numpy(np.int64).view(np.uint64)
    if len(np.unique(keys)) < 2:
        raise UserError("train.eval_every needs at least two distinct training prompts to carve a validation slice")
    in_validation = keys <= eval_cutoff(keys, cfg.validation_fraction)
    return PairSubset(pairs, np.flatnonzero(~in_validation)), PairSubset(pairs, np.flatnonzero(in_validation))


def validation_metrics(model: RewardModel, pairs: PairSubset, pad_id: int, batch_size: int,
                       device: torch.device, precision: str) -> dict:
    """{"val_loss", "val_accuracy"} of the validation pairs with the current weights."""
    n = len(pairs)
    sequences, segments = pairs.sequences(range(n))
    rewards = score_sequences(model, sequences, pad_id, batch_size, device, segments=segments, groups=pair_groups(n),
                              precision=precision)
    margin = torch.from_numpy(np.asarray(pairs.margin, dtype=np.float32))
    return {"val_loss": bt_loss_per_pair(rewards[:n], rewards[n:], margin).mean().item(),
            "val_accuracy": pair_correct(rewards[:n], rewards[n:]).mean().item()}


def stats_sample(n: int, limit: int) -> np.ndarray:
    """All pair indices when n <= limit, else `limit` of them evenly spaced (deterministic)."""
    return np.arange(n) if n <= limit else np.unique(np.linspace(0, n - 1, limit).round().astype(np.int64))


def write_outputs(paths: TrainPaths, model: RewardModel, tokenizer, template: PairTemplate, pairs: TokenStore,
                  curve: list[dict], model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device,
                  counts: dict, adapter: Path | None = None) -> dict:
    """Score the training pairs (or a sample) with the final weights, write the artifact (with the LoRA `adapter`
    directory in it, when there is one); returns the final metrics (the dvclive summary adds the last step's loss,
    accuracy, lr and epoch, and "step")."""
    model.eval()
    picked = stats_sample(len(pairs), cfg.stats_pairs)
    sequences, segments = pairs.sequences(picked)
    n = len(picked)
    rewards = score_sequences(model, sequences, tokenizer.pad_token_id, 4 * cfg.batch_size, device,
                              segments=segments, groups=pair_groups(n), precision=cfg.precision)
    chosen, rejected = rewards[:n], rewards[n:]
    margin = torch.from_numpy(np.asarray(pairs.margin, dtype=np.float32)[picked])
    train_loss = bt_loss_per_pair(chosen, rejected, margin).mean().item()
    meta = {"base_model": model_cfg.name, "pooling": model_cfg.pooling, "max_length": cfg.max_length,
            "truncation": TRUNCATION_POLICY, "input_format": template.recipe, "input_kind": template.kind,
            "segment_ids": template.segment_ids, "model_type": model.hf.config.model_type,
            "rendering": pairs.meta["rendering"], "tokenizer_sha256": pairs.meta["tokenizer_sha256"],
            "data_sha256": pairs.meta["source_sha256"], "reward_mean": rewards.mean().item(),
            "reward_std": rewards.std().item(), "precision": cfg.precision}
    if adapter is not None:
        meta["lora"] = dataclasses.asdict(cfg.lora_settings())
    save_artifact(model, tokenizer, paths.model_dir, round_floats(meta, 8), adapter)
    validation = [r for r in curve if "val_loss" in r]
    metrics = {"train_loss": train_loss, "train_accuracy": pair_correct(chosen, rejected).mean().item(),
               "epochs": cfg.epochs, "reward_mean": meta["reward_mean"], "reward_std": meta["reward_std"],
               "precision": cfg.precision, **counts}
    if cfg.max_steps:
        metrics["max_steps"] = cfg.max_steps  # the run may have stopped before train.epochs
    if validation:
        best = min(validation, key=lambda r: (r["val_loss"], r["step"]))
        metrics.update(best_validation_step=best["step"], best_validation_loss=best["val_loss"],
                       best_validation_accuracy=best["val_accuracy"])
    if n < len(pairs):
        metrics["stats_pairs"] = n  # train_loss/accuracy and reward statistics from this many pairs
    return round_floats(metrics)
