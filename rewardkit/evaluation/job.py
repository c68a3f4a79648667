"""The evaluate stage's job: score the held-out pairs of the eval token store (encoded exactly as in training) and
any extra evaluation sets with the trained model, without holding the rows; then release the model with its card.

Metrics per set: pairwise accuracy over ALL pairs with ties ½, tie rate, margin, BT loss, reward mean/std, ECE,
accuracy by which side is longer, the "longer answer wins" baseline on the same pairs, and breakdowns by `source` and
`subset` when pairs carry them (`rewardkit.evaluation.breakdowns`). Also per-pair scores of the eval split, and the
plot data (reward histogram, calibration curve, accuracy per group and per length difference) as dvclive custom
plots (`rewardkit.tracking`)."""
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
from rewardkit.evaluation.answer_scores import score_extra_set
from rewardkit.evaluation.breakdowns import breakdowns, group_rows, pair_frame
from rewardkit.evaluation.extra_sets import check_extra_sets, prepare_extra_set
from rewardkit.evaluation.length_bias import length_bias
from rewardkit.evaluation.metrics import pair_metrics, reward_histogram
from rewardkit.evaluation.model_card import write_release
from rewardkit.evaluation.report import ReportInputs, write_report, wrong_pairs
from rewardkit.io import atomic_path, round_floats, write_json
from rewardkit.modeling.artifact import load_artifact
from rewardkit.modeling.devices import enable_tf32, resolve_device, resolve_precision
from rewardkit.modeling.inference import score_sequences
from rewardkit.modeling.model import RewardModel
from rewardkit.modeling.objective import pair_correct
from rewardkit.modeling.packing import pair_groups
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
    """dvclive's directory for the plots: plots/custom/{reward_histogram,calibration,accuracy_by_group,
    accuracy_by_length_diff}.json."""
    extra_dir: Path
    """The directory holding every evaluate.extra_sets file (tracked by dvc.yaml)."""
    extra_out: Path
    """Working outputs of the extra sets: validated rows, rejects and token stores, one directory a set."""
    eval_rows: Path | None = None
    """The held-out split's rows (data/eval.jsonl), for the texts of the report's pairs."""
    report: Path | None = None
    """The self-contained HTML report (metrics/report.html)."""


def score_store(model: RewardModel, tokenizer, store: TokenStore, batch_size: int, device: torch.device,
                desc: str = "evaluate", progress: bool = True,
                precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of the chosen and rejected answers of every pair of a store; `batch_size` counts pairs; `precision`:
    the body's (fp32, bf16, auto). The benchmark times evaluation with it."""
    n = len(store)
    sequences, segments = store.sequences(range(n))
    with tqdm(total=2 * n, desc=desc, unit="seq", dynamic_ncols=True, disable=not progress) as bar:
        rewards = score_sequences(model, sequences, tokenizer.pad_token_id, 2 * batch_size, device, bar, segments,
                                  pair_groups(n), precision)  # a decoder computes each pair's prompt once
    return rewards[:n], rewards[n:]


def open_eval_store(path: Path, model_dir: Path, meta: dict, segment_ids: bool,
                    use_margin: bool = True) -> TokenStore:
    """The eval store, checked to be encoded as the model was trained (max length, tokenizer); its margins follow
    training's rule (`use_margin`: train.use_margin)."""
    store = TokenStore(path, segment_ids=segment_ids, use_margin=use_margin)
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
    """Metrics (with breakdowns) of one scored store, its calibration curve, and its per-pair columns. The loss
    takes the store's margins, as training does (none when the store was opened without use_margin)."""
    columns = store.columns(*("id", "chosen_chars", "rejected_chars", "source", "subset"))
    margins = torch.from_numpy(store.margin)
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
                   device: str = "auto", use_margin: bool = True) -> dict:
    """Score the eval store and the extra sets with the model in `paths.model_dir`, write every output and the
    released model; returns the metrics. `use_margin` is train.use_margin: the losses follow training's rule."""
    extra_sets = check_extra_sets(cfg.extra_sets, paths.extra_dir)
    torch_device = resolve_device(device)
    precision = resolve_precision(cfg.precision, torch_device)
    enable_tf32(torch_device)
    model, tokenizer, meta = load_artifact(paths.model_dir, torch_device)
    segment_ids = input_template(model.hf.config, tokenizer).segment_ids
    store = open_eval_store(paths.store, paths.model_dir, meta, segment_ids, use_margin)
    model.to(torch_device)
    chosen, rejected = score_store(model, tokenizer, store, cfg.batch_size, torch_device, precision=precision)
    metrics, calibration_curve, columns = store_metrics(store, chosen, rejected, cfg.calibration_bins)
    metrics["precision"] = precision
    metrics["length_bias"], length_rows = length_bias(chosen, rejected, columns["chosen_chars"].to_numpy(),
                                                      columns["rejected_chars"].to_numpy())
    groups = group_rows(metrics)

    with atomic_path(paths.extra_out, is_dir=True) as extra_tmp:
        for name, extra in extra_sets.items():
            extra_store, validation = prepare_extra_set(name, extra.path, extra_tmp, model, tokenizer, meta,
                                                        validate_cfg or ValidateConfig(), use_margin)
            if not len(extra_store):
                raise UserError(f"evaluate.extra_sets.{name}: no pair of {extra.path} is left to score")
            c, r, benchmark = score_extra_set(name, extra.scoring, extra_tmp / name, extra_store, model, tokenizer,
                                              cfg.batch_size, torch_device, precision)
            extra_metrics, _, _ = store_metrics(extra_store, c, r, cfg.calibration_bins)
            metrics.setdefault("extra_sets", {})[name] = {**extra_metrics, **benchmark, "validate": validation}
            groups += group_rows(extra_metrics, name)
        (extra_tmp / "sets.json").write_text(json.dumps({n: {"path": str(e.path), "scoring": e.scoring} for n, e in
                                                         extra_sets.items()}, indent=2, sort_keys=True) + "\n",
                                             encoding="utf-8")

    write_scores(paths.scores, columns["id"], chosen, rejected)
    write_plots(paths.live, {
        "reward_histogram": (reward_histogram(chosen, rejected), "reward", ["chosen", "rejected"]),
        "calibration": (round_floats(calibration_curve), "confidence", ["accuracy", "confidence"]),
        "accuracy_by_group": (round_floats(groups), "accuracy", "group"),
        "accuracy_by_length_diff": (round_floats(length_rows), "accuracy", "length_diff")})
    metrics = round_floats(metrics)
    write_json(paths.metrics, metrics)
    if paths.report:
        write_report(paths.report, metrics, ReportInputs(
            calibration_curve, reward_histogram(chosen, rejected), groups, length_rows,
            wrong_pairs(store, chosen, rejected, columns, paths.eval_rows)))
    write_release(paths.model_dir, paths.release, meta, metrics)
    print(json.dumps({k: v for k, v in round_floats(metrics, 4).items() if not isinstance(v, dict)}))
    return metrics
