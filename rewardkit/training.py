"""The train stage's job: fine-tune a Bradley–Terry reward model on the training split and write the artifact,
the training metrics (from one pass over the training pairs with the final weights) and the training curve."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from rewardkit import checkpoint, distributed, launcher
from rewardkit.artifact import save_artifact
from rewardkit.config import SCRATCH_BASES, ModelConfig, TrainConfig
from rewardkit.devices import resolve_device
from rewardkit.distributed import Ranks
from rewardkit.encoding import TRUNCATION_POLICY, PairTemplate, TrainingPairs, encode_training_pairs
from rewardkit.errors import UserError
from rewardkit.inference import score_sequences
from rewardkit.io import file_sha256, read_jsonl, round_floats, write_csv, write_json
from rewardkit.losses import bt_loss_per_pair
from rewardkit.metrics import pair_correct
from rewardkit.model import RewardModel, input_template, load_base
from rewardkit.optimization import optimize
from rewardkit.scratch import build_scratch

CURVE_FIELDS = ["step", "epoch", "loss", "accuracy", "lr"]


@dataclass(frozen=True)
class TrainPaths:
    train_data: Path
    model_dir: Path
    metrics: Path
    curve: Path
    scratch: Path
    """Git-ignored working directory: scratch bases and resumable checkpoints."""


def train_stage(paths: TrainPaths, model_cfg: ModelConfig, cfg: TrainConfig, entry_module: str,
                argv: list[str]) -> int:
    """Run training in this process, or, with nproc_per_node > 1 outside torchrun, relaunch `python -m
    entry_module *argv` under torchrun; returns the exit code."""
    device = resolve_device(cfg.device)  # before a relaunch: a bad device is reported once, not by every rank
    if cfg.nproc_per_node > 1 and not distributed.under_torchrun():
        return launcher.relaunch_under_torchrun(cfg.nproc_per_node, entry_module, argv, device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers outside autocast use TF32 tensor cores
        torch.backends.cudnn.allow_tf32 = True
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


def train_reward_model(paths: TrainPaths, model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device,
                       ranks: Ranks) -> None:
    if not paths.train_data.is_file():
        raise UserError(f"{paths.train_data} not found: run `dvc repro split` first")
    rows = list(read_jsonl(paths.train_data))
    data_sha = file_sha256(paths.train_data)
    key = checkpoint.run_key(data_sha, model_cfg, cfg)
    base = model_cfg.name
    if base in SCRATCH_BASES:  # random init + a SentencePiece tokenizer trained on the training split
        base_dir = paths.scratch / "base" / key
        if ranks.is_main:
            texts = list(dict.fromkeys(t for r in rows for t in (r["prompt"], r["chosen"], r["rejected"])))
            build_scratch(base, texts, model_cfg.scratch_vocab_size, base_dir, cfg.seed)
        distributed.barrier(ranks)
        base = str(base_dir)
    model, tokenizer = load_base(base, model_cfg.pooling, cfg.seed)
    model.to(device)
    template = input_template(model.hf.config, tokenizer)
    pairs = encode_training_pairs(tokenizer, rows, cfg.max_length, cfg.use_margin, template)
    if not pairs.chosen:
        raise UserError(f"no pair of {paths.train_data} is left to train on: all {len(rows)} became identical "
                        f"after truncation to train.max_length={cfg.max_length}; raise train.max_length")
    if ranks.is_main:
        print(f"training on {len(pairs.chosen)} pairs ({pairs.counts}) on {device} x{ranks.world}", file=sys.stderr)
    ckpt_dir = paths.scratch / "train" / key
    curve = optimize(model, pairs, cfg, device, ranks, tokenizer.pad_token_id, ckpt_dir)
    if ranks.is_main:
        write_outputs(paths, model, tokenizer, template, pairs, curve, model_cfg, cfg, device, data_sha)
        checkpoint.remove(ckpt_dir)
    # no barrier here: the other ranks may exit while rank 0 scores and saves, which on a large training set
    # can outlast NCCL's 10-minute collective timeout


def write_outputs(paths: TrainPaths, model: RewardModel, tokenizer, template: PairTemplate, pairs: TrainingPairs,
                  curve: list[dict], model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device,
                  data_sha: str) -> None:
    """Score the training pairs once with the final weights, then write the artifact, the curve and the metrics."""
    model.eval()
    n = len(pairs.chosen)
    sequences, segments = pairs.sequences(range(n))
    rewards = score_sequences(model, sequences, tokenizer.pad_token_id, 4 * cfg.batch_size, device,
                              segments=segments)
    chosen, rejected = rewards[:n], rewards[n:]
    train_loss = bt_loss_per_pair(chosen, rejected, torch.tensor(pairs.margin)).mean().item()
    meta = {"base_model": model_cfg.name, "pooling": model_cfg.pooling, "max_length": cfg.max_length,
            "truncation": TRUNCATION_POLICY, "input_format": template.recipe, "input_kind": template.kind,
            "segment_ids": template.segment_ids, "model_type": model.hf.config.model_type,
            "data_sha256": data_sha, "reward_mean": rewards.mean().item(), "reward_std": rewards.std().item()}
    save_artifact(model, tokenizer, paths.model_dir, round_floats(meta, 8))
    write_csv(paths.curve, round_floats(curve, 8), CURVE_FIELDS)
    metrics = {"train_loss": train_loss, "train_accuracy": pair_correct(chosen, rejected).mean().item(),
               "last_step_loss": curve[-1]["loss"], "steps": len(curve), "epochs": cfg.epochs,
               "reward_mean": meta["reward_mean"], "reward_std": meta["reward_std"], **pairs.counts}
    write_json(paths.metrics, round_floats(metrics))
