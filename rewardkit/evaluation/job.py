"""The evaluate stage's job: score the held-out pairs of the eval token store (encoded exactly as in training) and
any extra evaluation sets with the trained model, without holding the rows; then release the model with its card.

Metrics per set: pairwise accuracy over ALL pairs with ties ½, tie rate, margin, BT loss, reward mean/std, ECE,
accuracy by which side is longer, the "longer answer wins" baseline on the same pairs, and breakdowns by `source` and
`subset` when pairs carry them (`rewardkit.evaluation.breakdowns`). Also per-pair scores of the eval split, and the
plot data (reward histogram, calibration curve, accuracy per group) as dvclive custom plots (`rewardkit.tracking`)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from rewardkit.config import EvaluateConfig, ValidateConfig
from rewardkit.encoding.families import input_template
from rewardkit.encoding.store import TokenStore
from rewardkit.errors import UserError
from rewardkit.evaluation.breakdowns import breakdowns, group_rows, pair_frame
from rewardkit.evaluation.extra_sets import check_extra_sets, prepare_extra_set
from rewardkit.evaluation.metrics import pair_metrics, reward_histogram
from rewardkit.evaluation.model_card import write_release
from rewardkit.io import atomic_path, round_floats, write_json
from rewardkit.modeling.artifact import load_artifact
from rewardkit.modeling.devices import enable_tf32, resolve_device
from rewardkit.modeling.inference import score_sequences
from rewardkit.modeling.model import RewardModel
from rewardkit.modeling.objective import pair_correct
from rewardkit.tracking import write_plots


@dataclass(frozen=True)
class EvaluatePaths:
    store: Path
    model_dir: Path
    """The trained model (the train stage's output)."""
    release: Path
    """Where the released model goes: the trained model's files plus its model card."""
    scores: Path
    metrics: Path
    live: Path
    """dvclive's directory for the plots: plots/custom/{reward_histogram,calibration,accuracy_by_group}.json."""
    extra_dir: Path
    """The directory holding every evaluate.extra_sets file (tracked by dvc.yaml)."""
    extra_out: Path
    """Working outputs of the extra sets: validated rows, rejects and token stores, one directory a set."""


def score_store(model: RewardModel, tokenizer, store: TokenStore, batch_size: int, device: torch.device,
                desc: str = "evaluate", progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of the chosen and rejected answers of every pair of a store; `batch_size` counts pairs. The
    benchmark times evaluation with it."""
    n = len(store)
    sequences, segments = store.sequences(range(n))
    with tqdm(total=2 * n, desc=desc, unit="seq", dynamic_ncols=True, disable=not progress) as bar:
        rewards = score_sequences(model, sequences, tokenizer.pad_token_id, 2 * batch_size, device, bar, segments)
    return rewards[:n], rewards[n:]


def open_eval_store(path: Path, model_dir: Path, meta: dict, segment_ids: bool) -> TokenStore:
    """The eval store, checked to be encoded as the model was trained (max length, tokenizer)."""
    store = TokenStore(path, segment_ids=segment_ids)
    made = store.meta
    if made["max_length"] != meta["max_length"] or made["tokenizer_sha256"] != meta.get("tokenizer_sha256",
                                                                                         made["tokenizer_sha256"]):
        raise UserError(f"{path} was tokenized with another tokenizer or max_length ({made['max_length']}) than "
                        f"{model_dir} was trained with ({meta['max_length']}): run `dvc repro`")
    if not len(store):
        raise UserError(f"{path} has no pairs: raise split.eval_fraction")
    return store


def store_metrics(store: TokenStore, chosen: torch.Tensor, rejected: torch.Tensor,
                  bins: int) -> tuple[dict, list[dict], pd.DataFrame]:
    """Metrics (with breakdowns) of one scored store, its calibration curve, and its per-pair columns."""
    columns = store.columns(*("margin", "id", "chosen_chars", "rejected_chars", "source", "subset"))
    margins = torch.tensor(columns["margin"].fillna(0.0).to_numpy(np.float64), dtype=torch.float32)
    length_diff = torch.tensor((columns["chosen_chars"] - columns["rejected_chars"]).to_numpy(np.int64))
    metrics, curve = pair_metrics(chosen, rejected, margins, length_diff, bins)
    metrics.update(breakdowns(pair_frame(chosen, rejected, margins, length_diff), columns))
    return metrics, curve, columns


def write_scores(path: Path, ids: pd.Series, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
    """One JSON line a pair: index, id, both rewards, and whether the chosen one won (1, ½ on a tie, 0)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        outcomes = pair_correct(chosen, rejected).tolist()
        for i, (row_id, c, r, correct) in enumerate(zip(ids, chosen.tolist(), rejected.tolist(), outcomes)):
            record = {"index": i, "id": None if pd.isna(row_id) else row_id, "reward_chosen": round(c, 6),
                      "reward_rejected": round(r, 6), "correct": correct}
            f.write(json.dumps(record) + "\n")


def evaluate_model(paths: EvaluatePaths, cfg: EvaluateConfig, validate_cfg: ValidateConfig | None = None,
                   device: str = "auto") -> dict:
    """Score the eval store and the extra sets with the model in `paths.model_dir`, write every output and the
    released model; returns the metrics."""
    extra_sets = check_extra_sets(cfg.extra_sets, paths.extra_dir)
    torch_device = resolve_device(device)
    enable_tf32(torch_device)
    model, tokenizer, meta = load_artifact(paths.model_dir)
    segment_ids = input_template(model.hf.config, tokenizer).segment_ids
    store = open_eval_store(paths.store, paths.model_dir, meta, segment_ids)
    model.to(torch_device)
    chosen, rejected = score_store(model, tokenizer, store, cfg.batch_size, torch_device)
    metrics, calibration_curve, columns = store_metrics(store, chosen, rejected, cfg.calibration_bins)
    groups = group_rows(metrics)

    with atomic_path(paths.extra_out, is_dir=True) as extra_tmp:
        for name, source in extra_sets.items():
            extra_store, validation = prepare_extra_set(name, source, extra_tmp, model, tokenizer, meta,
                                                        validate_cfg or ValidateConfig())
            if not len(extra_store):
                raise UserError(f"evaluate.extra_sets.{name}: no pair of {source} is left to score")
            c, r = score_store(model, tokenizer, extra_store, cfg.batch_size, torch_device, desc=name)
            extra_metrics, _, _ = store_metrics(extra_store, c, r, cfg.calibration_bins)
            metrics.setdefault("extra_sets", {})[name] = {**extra_metrics, "validate": validation}
            groups += group_rows(extra_metrics, name)
        (extra_tmp / "sets.json").write_text(json.dumps({n: str(p) for n, p in extra_sets.items()}, indent=2,
                                                        sort_keys=True) + "\n", encoding="utf-8")

    write_scores(paths.scores, columns["id"], chosen, rejected)
    write_plots(paths.live, {
        "reward_histogram": (reward_histogram(chosen, rejected), "reward", ["chosen", "rejected"]),
        "calibration": (round_floats(calibration_curve), "confidence", ["accuracy", "confidence"]),
        "accuracy_by_group": (round_floats(groups), "accuracy", "group")})
    metrics = round_floats(metrics)
    write_json(paths.metrics, metrics)
    write_release(paths.model_dir, paths.release, meta, metrics)
    print(json.dumps({k: v for k, v in round_floats(metrics, 4).items() if not isinstance(v, dict)}))
    return metrics
