"""Extra sets scored per answer: each distinct answer of a row is scored once, its reward shared by every expanded
pair it is in; the rewards are written to `<set>/scores.jsonl` (row, side, answer, reward) and read by the set's
scoring rule (`rewardkit.evaluation.benchmarks`), detected from the rows' shape unless the set names it.

Detection: rows of 3 chosen and 3 rejected answers with a `domain` field are RM-Bench; rows with `subset` and
`num_correct` fields (and lists of answers) are RewardBench 2; anything else is scored as pairs only. Every set
also gets the plain pairwise metrics over all its expanded pairs (the job's `store_metrics`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from rewardkit.data.answers import EXPANDED_FROM
from rewardkit.encoding.store import TokenStore
from rewardkit.errors import UserError
from rewardkit.evaluation.benchmarks import (
    PAIRS,
    REWARDBENCH2,
    RMBENCH,
    RMBENCH_STYLES,
    rewardbench2_scores,
    rmbench_scores,
)
from rewardkit.io import atomic_path, read_jsonl
from rewardkit.modeling.inference import score_sequences

ROW_FIELDS = ("domain", "subset", "id", "num_correct")
SCORES_FILE = "scores.jsonl"


def pair_answers(validated: Path, store: TokenStore) -> pd.DataFrame:
    """Per store pair: its source row, its chosen and rejected answer indexes, and the row's benchmark fields."""
    lines = []
    for line in read_jsonl(validated):
        where = line[EXPANDED_FROM]
        lines.append({"row": where["row"], "chosen": where["chosen"], "rejected": where["rejected"],
                      **{f: line.get(f) for f in ROW_FIELDS}})
    table = pd.DataFrame(lines, columns=["row", "chosen", "rejected", *ROW_FIELDS])
    return table.iloc[store.columns("row")["row"].to_numpy()].reset_index(drop=True)


def score_answers(model, tokenizer, store: TokenStore, pairs: pd.DataFrame, batch_size: int,
                  device: torch.device, desc: str,
                  precision: str = "fp32") -> tuple[pd.DataFrame, torch.Tensor, torch.Tensor]:
    """(one row per distinct answer: row, side, answer, reward; the chosen and rejected reward of every pair).
    An answer's sequence is encoded from its prompt and itself alone (`encode_sequences`), so it is the same in
    every pair it is in: the first one's is scored. Sequences go to the model in the store's order (chosen ones,
    then rejected ones) less the repeats, so a set of plain pairs is scored exactly as before."""
    keys = {side: pd.MultiIndex.from_frame(pairs[["row", side]]) for side in ("chosen", "rejected")}
    first = {side: np.flatnonzero(~keys[side].duplicated()) for side in keys}
    order = [2 * int(p) for p in first["chosen"]] + [2 * int(p) + 1 for p in first["rejected"]]
    sequences = [store.sequence(s) for s in order]
    segments = [int(store.segments_array[s]) for s in order] if store.segment_ids else None
    with tqdm(total=len(order), desc=desc, unit="seq", dynamic_ncols=True) as bar:
        rewards = score_sequences(model, sequences, tokenizer.pad_token_id, 2 * batch_size, device, bar, segments,
                                  precision=precision)
    n_chosen = len(first["chosen"])
    per_side, answers = {}, []
    for side, part in (("chosen", rewards[:n_chosen]), ("rejected", rewards[n_chosen:])):
        unique = keys[side][first[side]]
        per_side[side] = part[torch.from_numpy(unique.get_indexer(keys[side]))]
        answers.append(pd.DataFrame({"row": unique.get_level_values(0), "side": side,
                                     "answer": unique.get_level_values(1), "reward": part.numpy()}))
    table = pd.concat(answers, ignore_index=True).sort_values(["row", "side", "answer"], kind="stable")
    return table.reset_index(drop=True), per_side["chosen"], per_side["rejected"]


def write_answer_scores(path: Path, answers: pd.DataFrame) -> None:
    """One JSON line an answer: row (0-based index in the set's file), side, answer (index on its side), reward."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row, side, answer, reward in answers[["row", "side", "answer", "reward"]].itertuples(index=False):
            f.write(json.dumps({"row": int(row), "side": side, "answer": int(answer),
                                "reward": round(float(reward), 6)}) + "\n")


def row_rewards(answers: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Per source row: its chosen and rejected rewards (lists in answer order) and its benchmark fields."""
    lists = answers.groupby(["row", "side"], sort=True)["reward"].agg(list).unstack("side")
    fields = pairs.drop_duplicates("row").set_index("row")[list(ROW_FIELDS)]
    return lists.join(fields).sort_index()


def detect_scoring(rows: pd.DataFrame) -> str:
    sizes = zip(rows["chosen"].map(len), rows["rejected"].map(len))
    if rows["domain"].notna().all() and all(s == (RMBENCH_STYLES, RMBENCH_STYLES) for s in sizes):
        return RMBENCH
    if rows["subset"].notna().all() and rows["num_correct"].notna().all():
        return REWARDBENCH2
    return PAIRS


def benchmark_metrics(name: str, scoring: str, rows: pd.DataFrame) -> dict:
    """{"scoring": the rule, and under its name the benchmark's numbers} for one scored set."""
    scoring = detect_scoring(rows) if scoring == "auto" else scoring
    if scoring == PAIRS:
        return {"scoring": PAIRS}
    if scoring == RMBENCH:
        bad = [(k, len(c), len(r)) for k, c, r in zip(rows.index, rows["chosen"], rows["rejected"])
               if (len(c), len(r)) != (RMBENCH_STYLES, RMBENCH_STYLES)]
        if bad:
            k, c, r = bad[0]
            raise UserError(f"evaluate.extra_sets.{name}: scoring rmbench needs 3 chosen and 3 rejected answers a "
                            f"row (concise, detailed, markdown); row index {k} has {c} and {r} ({len(bad)} such "
                            "rows): set scoring: pairs")
        domains = None if rows["domain"].isna().all() else [None if pd.isna(d) else d for d in rows["domain"]]
        return {"scoring": RMBENCH, RMBENCH: rmbench_scores(np.array(rows["chosen"].tolist()),
                                                            np.array(rows["rejected"].tolist()), domains)}
    if rows["subset"].isna().any():
        raise UserError(f"evaluate.extra_sets.{name}: scoring rewardbench2 needs a 'subset' field on every row")
    return {"scoring": REWARDBENCH2, REWARDBENCH2: rewardbench2_scores(
        [{"subset": s, "id": i, "num_correct": len(c), "scores": [*c, *r]}
         for s, i, c, r in zip(rows["subset"], rows["id"], rows["chosen"], rows["rejected"])])}


def score_extra_set(name: str, scoring: str, set_dir: Path, store: TokenStore, model, tokenizer, batch_size: int,
                    device: torch.device, precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Score a prepared extra set per answer, write its scores.jsonl beside its token store; returns the chosen
    and rejected reward of every expanded pair and the benchmark's numbers."""
    pairs = pair_answers(set_dir / "validated.jsonl", store)
    answers, chosen, rejected = score_answers(model, tokenizer, store, pairs, batch_size, device, name, precision)
    write_answer_scores(set_dir / SCORES_FILE, answers)
    return chosen, rejected, benchmark_metrics(name, scoring, row_rewards(answers, pairs))
