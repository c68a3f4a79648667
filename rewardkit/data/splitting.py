"""Split validated pairs into train and eval by prompt: pairs that share a prompt (under `normalise`; a message
list in its plain rendering) always land on the same side, so no eval prompt is seen in training.

How sides are assigned. Each prompt group gets
    u = int.from_bytes(blake2b(normalised prompt, key=str(split.seed).encode(), digest_size=8).digest(), "big")
Groups are sorted by u and taken into eval from the smallest u upward until eval holds at least
target = round(eval_fraction x total pairs) pairs (halves round up). The u of the last group taken is the cut-off
c, and a pair is in eval exactly when its u <= c. Eval therefore overshoots the target by less than one group,
and the order of the input lines plays no part.

Stability under append. A prompt's u depends only on the prompt and the seed, never on the rest of the data, so
appending rows can only move the cut-off, from c_old to c_new. An old pair changes side if and only if its u lies
between the two cut-offs; every other old pair keeps its side, and rows appended for an old prompt join that
prompt's side unless the cut-off crosses it. u is uniform, so new prompts fall below c_old in about the
proportion eval_fraction, and c_new lands near c_old: off by the chance deviation of that count (of order
sqrt(eval_fraction x new pairs x mean group size) pairs) plus at most one group (tests/unit/test_split.py
checks the bound and that every moved pair has u between the two cut-offs).

Two streaming passes: pass 1 reads u per line into a numpy uint64 array (8 bytes a line; one process per core on
large files), pass 2 copies each line byte-exact to its side, keeping input order. Outputs are written atomically.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from hashlib import blake2b
from pathlib import Path

import numpy as np

from rewardkit.config import SplitConfig
from rewardkit.data.formats import render_plain_prompt
from rewardkit.data.lines import CHUNK, default_workers, file_lines, map_line_ranges, parse_json
from rewardkit.errors import UserError
from rewardkit.io import atomic_path, round_floats, write_json
from rewardkit.text import normalise

NO_LIMIT = sys.maxsize  # validated lines were checked against validate.max_line_bytes already


@dataclass(frozen=True)
class SplitOutputs:
    train: Path
    eval: Path
    metrics: Path


def range_hashes(path: Path, start: int, end: int, seed: int) -> bytes:
    """The 8-byte keyed digests of the normalised prompts of the lines in the byte range [start, end)."""
    key = str(seed).encode()
    digests = bytearray()
    for line in file_lines(path, NO_LIMIT, start, end):
        prompt = normalise(render_plain_prompt(parse_json(line.decode("utf-8"))["prompt"]))  # messages: rendered
        digests += blake2b(prompt.encode("utf-8"), key=key, digest_size=8).digest()
    return bytes(digests)


def prompt_hashes(path: Path, seed: int, workers: int | None = None) -> np.ndarray:
    """u of every line's normalised prompt, in line order (parsing is the bottleneck: one process per core)."""
    workers = default_workers(path) if workers is None else workers
    parts = map_line_ranges(range_hashes, path, workers, seed)
    return np.frombuffer(b"".join(parts), dtype=">u8").astype(np.uint64)


def eval_cutoff(u: np.ndarray, eval_fraction: float) -> int:
    """The largest u in eval: groups sorted by u are taken until eval pairs >= eval_fraction * pairs, rounded."""
    groups, sizes = np.unique(u, return_counts=True)  # sorted by u
    target = math.floor(eval_fraction * len(u) + 0.5)  # round half up (Python's round() would give 0.5 -> 0)
    if target == 0:
        raise UserError(f"split.eval_fraction = {eval_fraction} of {len(u)} pairs gives 0 eval pairs; "
                        "raise split.eval_fraction or add data")
    last = int(np.searchsorted(np.cumsum(sizes), target))  # first group index where the running total >= target
    if last == len(groups) - 1:
        raise UserError(f"split.eval_fraction = {eval_fraction} would put all {len(u)} pairs "
                        f"({len(groups)} prompt(s)) in eval, leaving none to train on; lower split.eval_fraction "
                        "or add data with more distinct prompts")
    return int(groups[last])


def write_sides(path: Path, in_eval: np.ndarray, out: SplitOutputs) -> None:
    """Copy each line of `path` byte-exact to eval (in_eval true) or train, keeping input order."""
    side_of = in_eval.astype(np.uint8).tobytes()  # indexing bytes gives ints, far cheaper than numpy scalars
    with atomic_path(out.train) as train_tmp, atomic_path(out.eval) as eval_tmp, \
            open(train_tmp, "wb", buffering=CHUNK) as train, open(eval_tmp, "wb", buffering=CHUNK) as evals:
        sides = (train, evals)
        for i, line in enumerate(file_lines(path, NO_LIMIT)):
            sides[side_of[i]].write(line + b"\n")


def split_file(path: Path, out: SplitOutputs, cfg: SplitConfig, workers: int | None = None) -> dict:
    """Split the validated pairs of `path` into `out`; returns the metrics."""
    if not path.exists():
        raise UserError(f"{path} not found: run the validate stage first (dvc repro split)")
    u = prompt_hashes(path, cfg.seed, workers)
    if not len(u):
        raise UserError(f"{path} is empty: nothing to split")
    in_eval = u <= eval_cutoff(u, cfg.eval_fraction)
    write_sides(path, in_eval, out)

    eval_u, train_u = np.unique(u[in_eval]), np.unique(u[~in_eval])
    on_both = len(np.intersect1d(eval_u, train_u, assume_unique=True))
    if on_both:  # cannot happen with one cut-off; checked on the assignment written, so the metric is measured
        raise RuntimeError(f"{on_both} prompts landed on both sides")
    eval_pairs = int(in_eval.sum())
    metrics = round_floats({
        "train_pairs": len(u) - eval_pairs, "eval_pairs": eval_pairs,
        "train_prompts": len(train_u), "eval_prompts": len(eval_u),
        "prompts_on_both_sides": on_both, "eval_fraction_actual": eval_pairs / len(u)})
    write_json(out.metrics, metrics)
    print(f"split: {len(u) - eval_pairs} train pairs ({len(train_u)} prompts), {eval_pairs} eval pairs "
          f"({len(eval_u)} prompts), eval fraction {eval_pairs / len(u):.4f} (target {cfg.eval_fraction})")
    return metrics
