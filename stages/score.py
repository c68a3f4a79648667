"""Score JSONL rows with a trained reward model, and the Python API for best-of-n / RLHF reward functions.

    python -m stages.score --model models/reward_model --input in.jsonl --output out.jsonl \\
        [--batch-size 64] [--normalize] [--device auto]

The first row decides the format of the file:
- `prompt` + `response` rows get "reward";
- `prompt` + `chosen` + `rejected` rows get "reward_chosen", "reward_rejected" and "preferred":
  "chosen" | "rejected" | "tie".
Other fields pass through unchanged and rows keep their order; blank lines are skipped. Sequences are encoded
exactly as in training (`[CLS] prompt [SEP] response [SEP]`, the artifact's max_length and truncation policy).
`--normalize` reports (r - reward_mean) / reward_std with the training-set statistics in reward_model.json.

The input is checked in full before the model is loaded, so a bad row costs no scoring time: it stops the run
with one line such as "in.jsonl line 17: field 'response' is missing" and exit code 2. The output is written
chunk by chunk to a temporary file and renamed at the end, so it never exists half-written.
"""
from __future__ import annotations

import argparse
import json
from itertools import islice
from pathlib import Path
from typing import Iterator, Sequence

import torch
from tqdm import tqdm

from stages.common import UserError, atomic_path, run_main
from stages.encoding import encode_responses, pair_template
from stages.modeling import load_artifact, score_ids
from stages.validate import kind

RESPONSE_FIELDS = ("prompt", "response")
PAIR_FIELDS = ("prompt", "chosen", "rejected")
CHUNK_ROWS = 4096  # rows read, encoded and scored at a time: memory stays flat for any file size
BOM = b"\xef\xbb\xbf"


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when visible, else cpu; any other torch device string as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but no CUDA device is visible; use --device auto or cpu")
    return device


class RewardScorer:
    """A trained reward model loaded once; `score` encodes like training and scores in length-sorted batches.

        scorer = RewardScorer.from_pretrained("models/reward_model")
        rewards = scorer.score(prompt, candidates)           # one prompt, n candidates: best-of-n
        best = candidates[max(range(len(rewards)), key=rewards.__getitem__)]
    """

    def __init__(self, model, tokenizer, meta: dict, device: torch.device):
        self.model, self.tokenizer, self.meta, self.device = model, tokenizer, meta, device
        self.template = pair_template(tokenizer)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str = "auto") -> RewardScorer:
        device = resolve_device(device)
        model, tokenizer, meta = load_artifact(model_dir)
        return cls(model.to(device), tokenizer, meta, device)

    def encode(self, prompts: str | Sequence[str], responses: Sequence[str]) -> list[list[int]]:
        """Input ids as in training; a single prompt string is paired with every response."""
        if isinstance(prompts, str):
            prompts = [prompts] * len(responses)
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; pass one prompt per response")
        return encode_responses(self.tokenizer, list(prompts), list(responses), self.meta["max_length"],
                                self.template)[0]

    def normalize(self, rewards: torch.Tensor) -> torch.Tensor:
        """(r - mean) / std with the reward statistics of the training pairs, saved by the train stage."""
        mean, std = self.meta.get("reward_mean"), self.meta.get("reward_std")
        if mean is None or not std:
            raise UserError(f"reward_model.json has no usable reward_mean/reward_std (got {mean}, {std}); "
                            "score without normalize")
        return (rewards - mean) / std

    def score_tensor(self, prompts: str | Sequence[str], responses: Sequence[str], normalize: bool = False,
                     batch_size: int = 64, progress=None) -> torch.Tensor:
        """Rewards as a float32 CPU tensor, in input order."""
        ids = self.encode(prompts, responses)
        if not ids:
            return torch.empty(0)
        rewards = score_ids(self.model, ids, self.tokenizer.pad_token_id, batch_size, self.device, progress)
        return self.normalize(rewards) if normalize else rewards

    def score(self, prompts: str | Sequence[str], responses: Sequence[str], normalize: bool = False,
              batch_size: int = 64) -> list[float]:
        """One reward per (prompt, response) pair, as Python floats."""
        return self.score_tensor(prompts, responses, normalize, batch_size).tolist()


def score(prompts: str | Sequence[str], responses: Sequence[str], model_dir: str | Path = "models/reward_model",
          normalize: bool = False, device: str = "auto", batch_size: int = 64) -> list[float]:
    """One-shot convenience: loads the model on every call; keep a `RewardScorer` to score repeatedly."""
    return RewardScorer.from_pretrained(model_dir, device).score(prompts, responses, normalize, batch_size)


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
                raise UserError(f"{path} line {number}: expected a JSON object, got {kind(row)}")
            yield number, row


def fields_of(row: dict) -> tuple[str, ...]:
    return RESPONSE_FIELDS if "response" in row else PAIR_FIELDS


def check_row(path: Path, number: int, row: dict, fields: tuple[str, ...], first: int) -> None:
    for name in fields:
        if name not in row:
            raise UserError(f"{path} line {number}: field '{name}' is missing (rows are {'/'.join(fields)}, "
                            f"as on line {first})")
        value = row[name]
        if not isinstance(value, str):
            raise UserError(f"{path} line {number}: field '{name}' must be a string, got {kind(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise UserError(f"{path} line {number}: field '{name}' has an unpaired surrogate escape "
                            "(\\ud800-\\udfff); not valid Unicode text") from None


def check_input(path: Path) -> tuple[tuple[str, ...], int]:
    """Check every row before any scoring: (the fields of the file's format, number of rows)."""
    if not path.is_file():
        raise UserError(f"input file not found: {path}")
    fields, first, n = None, 0, 0
    for number, row in read_rows(path):
        if fields is None:  # the first row decides the format of the file
            fields, first = fields_of(row), number
        check_row(path, number, row, fields, first)
        n += 1
    if not n:
        raise UserError(f"{path} has no rows to score")
    return fields, n


def score_chunk(scorer: RewardScorer, rows: list[dict], fields: tuple[str, ...], normalize: bool,
                batch_size: int, bar) -> None:
    """Add the reward fields to `rows` in place; pairs are scored as one list, chosen then rejected."""
    prompts = [r["prompt"] for r in rows]
    if fields == RESPONSE_FIELDS:
        for row, r in zip(rows, scorer.score_tensor(prompts, [r["response"] for r in rows], normalize,
                                                    batch_size, bar).tolist()):
            row["reward"] = r
        return
    n = len(rows)
    rewards = scorer.score_tensor(prompts + prompts, [r["chosen"] for r in rows] + [r["rejected"] for r in rows],
                                  normalize, batch_size, bar).tolist()
    for row, c, r in zip(rows, rewards[:n], rewards[n:]):
        row["reward_chosen"], row["reward_rejected"] = c, r
        row["preferred"] = "chosen" if c > r else "rejected" if r > c else "tie"


def main(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    fields, n_rows = check_input(args.input)
    scorer = RewardScorer.from_pretrained(args.model, args.device)
    if args.normalize:
        scorer.normalize(torch.zeros(1))  # fail before scoring when the statistics are missing
    per_row = 1 if fields == RESPONSE_FIELDS else 2
    rows = (row for _, row in read_rows(args.input))
    with atomic_path(args.output) as tmp, open(tmp, "w", encoding="utf-8", errors="backslashreplace") as out, \
            tqdm(total=per_row * n_rows, desc="score", unit="seq", dynamic_ncols=True) as bar:
        # backslashreplace: a lone surrogate in a passed-through field is written back as its JSON escape \udXXX
        while chunk := list(islice(rows, CHUNK_ROWS)):
            score_chunk(scorer, chunk, fields, args.normalize, args.batch_size, bar)
            out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in chunk)
    print(f"score: {n_rows} rows of {args.input} -> {args.output} ({'/'.join(fields)}"
          f"{', normalized' if args.normalize else ''})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m stages.score", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/reward_model"), help="trained reward model directory")
    p.add_argument("--input", type=Path, required=True, help="JSONL with prompt+response or prompt+chosen+rejected")
    p.add_argument("--output", type=Path, required=True, help="JSONL to write: the input rows plus rewards")
    p.add_argument("--batch-size", type=int, default=64, help="sequences per forward pass (default 64)")
    p.add_argument("--normalize", action="store_true", help="report (r - mean) / std of the training rewards")
    p.add_argument("--device", default="auto", help="auto (cuda when visible), cpu, cuda or cuda:N")
    return p.parse_args(argv)


if __name__ == "__main__":
    run_main(lambda: main(parse_args()))
