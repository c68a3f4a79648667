"""evaluate stage: score the held-out pairs of data/eval.jsonl with models/reward_model.

Writes metrics/eval.json (pairwise accuracy over ALL pairs with ties ½, tie rate, margin, BT loss, reward
mean/std, ECE, accuracy by which side is longer, and the "longer answer wins" baseline on the same pairs),
per-pair scores to data/eval_scores.jsonl, and the plot data metrics/eval_reward_hist.csv and
metrics/eval_calibration.csv. Pairs are encoded exactly as in training, with the artifact's own max_length.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stages.common import UserError, atomic_path, read_jsonl, round_floats, run_main, write_json
from stages.config import EvaluateConfig, load
from stages.encoding import encode_answers, row_margin
from stages.losses import bt_loss_per_pair, calibration, pair_correct
from stages.modeling import load_artifact, score_ids

EVAL_DATA = Path("data/eval.jsonl")
MODEL_DIR = Path("models/reward_model")
SCORES = Path("data/eval_scores.jsonl")
METRICS = Path("metrics/eval.json")
HIST = Path("metrics/eval_reward_hist.csv")
CALIBRATION = Path("metrics/eval_calibration.csv")
HIST_BINS = 30


def score_pairs(model, tokenizer, meta: dict, rows: list[dict], batch_size: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of the chosen and rejected answers of `rows`, encoded with the training truncation policy."""
    ids, _, _ = encode_answers(tokenizer, rows, meta["max_length"])
    with tqdm(total=2 * len(rows), desc="evaluate", unit="seq", dynamic_ncols=True) as bar:
        rewards = score_ids(model, ids, tokenizer.pad_token_id, 2 * batch_size, device, bar)
    return rewards[:len(rows)], rewards[len(rows):]


def length_split(chosen_longer: torch.Tensor, correct: torch.Tensor) -> dict:
    """Accuracy where the chosen answer is the longer one vs the shorter one (by characters)."""
    out = {}
    for name, mask in (("accuracy_chosen_longer", chosen_longer > 0), ("accuracy_chosen_shorter", chosen_longer < 0)):
        out[name] = correct[mask].mean().item() if mask.any() else None
        out[name.replace("accuracy", "pairs")] = int(mask.sum())
    return out


def write_hist(chosen: torch.Tensor, rejected: torch.Tensor) -> None:
    edges = np.linspace(min(chosen.min(), rejected.min()).item(), max(chosen.max(), rejected.max()).item() + 1e-6,
                        HIST_BINS + 1)
    c, _ = np.histogram(chosen.numpy(), edges)
    r, _ = np.histogram(rejected.numpy(), edges)
    centres = (edges[:-1] + edges[1:]) / 2
    rows = [{"reward": round(float(x), 4), "chosen": int(a), "rejected": int(b)} for x, a, b in zip(centres, c, r)]
    write_csv(HIST, rows)


def write_csv(path: Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(cfg: EvaluateConfig) -> None:
    if not EVAL_DATA.is_file():
        raise UserError(f"{EVAL_DATA} not found: run `dvc repro split` first")
    rows = list(read_jsonl(EVAL_DATA))
    if not rows:
        raise UserError(f"{EVAL_DATA} is empty: raise split.eval_fraction")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer, meta = load_artifact(MODEL_DIR)
    model.to(device)
    chosen, rejected = score_pairs(model, tokenizer, meta, rows, cfg.batch_size, device)

    correct = pair_correct(chosen, rejected)
    margins = torch.tensor([row_margin(r) for r in rows])
    length_diff = torch.tensor([len(r["chosen"]) - len(r["rejected"]) for r in rows])
    longer_wins = (length_diff > 0).double() + 0.5 * (length_diff == 0).double()  # the baseline, ties ½
    ece, bins = calibration(chosen, rejected, cfg.calibration_bins)
    rewards = torch.cat([chosen, rejected])
    metrics = {
        "pairs": len(rows),
        "accuracy": correct.mean().item(),
        "tie_rate": (chosen == rejected).double().mean().item(),
        "mean_margin": (chosen - rejected).mean().item(),
        "loss": bt_loss_per_pair(chosen, rejected, margins).mean().item(),
        "reward_mean": rewards.mean().item(),
        "reward_std": rewards.std().item(),
        "ece": ece,
        "baseline_longer_wins_accuracy": longer_wins.mean().item(),
        **length_split(length_diff, correct),
    }
    with atomic_path(SCORES) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i, (row, c, r) in enumerate(zip(rows, chosen.tolist(), rejected.tolist())):
            record = {"index": i, "id": row.get("id"), "reward_chosen": round(c, 6), "reward_rejected": round(r, 6),
                      "correct": correct[i].item()}
            f.write(json.dumps(record) + "\n")
    write_hist(chosen, rejected)
    write_csv(CALIBRATION, round_floats(bins))
    write_json(METRICS, round_floats(metrics))
    print(json.dumps(round_floats(metrics, 4)))


if __name__ == "__main__":
    run_main(lambda: main(load(EvaluateConfig)))
