"""Add rewards to the rows of a JSONL file (the `score` CLI).

The first row decides the format of the file:
- `prompt` + `response` rows get "reward";
- `prompt` + `chosen` + `rejected` rows get "reward_chosen", "reward_rejected" and "preferred":
  "chosen" | "rejected" | "tie".
Other fields pass through unchanged and rows keep their order; blank lines are skipped. The input is checked in
full before the model is loaded, so a bad row costs no scoring time: it stops the run with one line such as
"in.jsonl line 17: field 'response' is missing". The output is written chunk by chunk to a temporary file and
renamed at the end, so it never exists half-written.
"""
from __future__ import annotations

import json
from itertools import islice
from pathlib import Path
from typing import Iterator

import torch
from tqdm import tqdm

from rewardkit.data.formats import RowProblem, check_messages, check_scored_pair
from rewardkit.data.lines import BOM
from rewardkit.errors import UserError
from rewardkit.io import atomic_path
from rewardkit.modeling.objective import preferred
from rewardkit.scoring.scorer import RewardScorer
from rewardkit.text import json_kind

RESPONSE_FIELDS = ("prompt", "response")
PAIR_FIELDS = ("prompt", "chosen", "rejected")
CHUNK_ROWS = 4096  # rows read, encoded and scored at a time: memory stays flat for any file size


def read_rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) of every non-blank line; a line that is not a JSON object stops with a UserError."""
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if number == 1:
                line = line.removeprefix(BOM)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except UnicodeDecodeError as e:
                raise UserError(f"{path} line {number}: not valid UTF-8 at byte {e.start + 1}") from None
            except json.JSONDecodeError as e:
                raise UserError(f"{path} line {number}: not valid JSON: {e.msg} at column {e.colno}") from None
            if not isinstance(row, dict):
                raise UserError(f"{path} line {number}: expected a JSON object, got {json_kind(row)}")
            yield number, row


def check_row(path: Path, number: int, row: dict, fields: tuple[str, ...], first: int) -> None:
    for name in fields:
        if name not in row:
            raise UserError(f"{path} line {number}: field '{name}' is missing (rows are {'/'.join(fields)}, "
                            f"as on line {first})")
        value = row[name]
        if isinstance(value, list):  # a conversational row: messages, rendered as the training data was
            try:
                check_messages(value, name)
            except RowProblem as e:
                raise UserError(f"{path} line {number}: {e}") from None
            continue
        if not isinstance(value, str):
            raise UserError(f"{path} line {number}: field '{name}' must be a string or a list of messages, got "
                            f"{json_kind(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"{path} line {number}: field '{name}' has an unpaired surrogate escape "
                            "(\\ud800-\\udfff); not valid Unicode text") from None
    for name in fields[1:]:  # each response with its prompt: both text, or both messages (rendered as trained)
        try:
            check_scored_pair(row["prompt"], row[name], "prompt", name)
        except RowProblem as e:
            raise UserError(f"{path} line {number}: {e}") from None


def check_input(path: Path) -> tuple[tuple[str, ...], int]:
    """Check every row before any scoring: (the fields of the file's format, number of rows)."""
    if not path.is_file():
        raise UserError(f"input file not found: {path}")
    fields, first, n = None, 0, 0
    for number, row in read_rows(path):
        if fields is None:  # the first row decides the format of the file
            fields, first = (RESPONSE_FIELDS if "response" in row else PAIR_FIELDS), number
        check_row(path, number, row, fields, first)
        n += 1
    if not n:
        raise UserError(f"{path} has no rows to score")
    return fields, n


def add_rewards(scorer: RewardScorer, rows: list[dict], fields: tuple[str, ...], normalize: bool,
                batch_size: int, bar) -> None:
    """Add the reward fields to `rows` in place; pairs are scored as one list, chosen then rejected."""
    prompts = [r["prompt"] for r in rows]
    if fields == RESPONSE_FIELDS:
        rewards = scorer.rewards(prompts, [r["response"] for r in rows], normalize, batch_size, bar).tolist()
        for row, reward in zip(rows, rewards):
            row["reward"] = reward
        return
    n = len(rows)
    rewards = scorer.rewards(prompts + prompts, [r["chosen"] for r in rows] + [r["rejected"] for r in rows],
                             normalize, batch_size, bar).tolist()
    for row, c, r in zip(rows, rewards[:n], rewards[n:]):
        row["reward_chosen"], row["reward_rejected"] = c, r
        row["preferred"] = preferred(c, r)


def score_file(model_dir: Path, source: Path, output: Path, batch_size: int = 64, normalize: bool = False,
               device: str = "auto", precision: str = "fp32") -> int:
    """Score every row of `source` into `output`; returns the number of rows."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    fields, n_rows = check_input(source)
    scorer = RewardScorer.from_pretrained(model_dir, device, precision)
    if normalize:
        scorer.normalize(torch.zeros(1))  # fail before scoring when the statistics are missing
    per_row = 1 if fields == RESPONSE_FIELDS else 2
    rows = (row for _, row in read_rows(source))
    with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", errors="backslashreplace") as out, \
            tqdm(total=per_row * n_rows, desc="score", unit="seq", dynamic_ncols=True) as bar:
        # backslashreplace: a lone surrogate in a passed-through field is written back as its JSON escape \udXXX
        while chunk := list(islice(rows, CHUNK_ROWS)):
            add_rewards(scorer, chunk, fields, normalize, batch_size, bar)
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in chunk)
    print(f"score: {n_rows} rows of {source} -> {output} ({'/'.join(fields)}"
          f"{', normalized' if normalize else ''})")
    return n_rows
