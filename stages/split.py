"""Split data/validated.jsonl into data/train.jsonl and data/eval.jsonl by prompt.

Pairs that share a prompt (after collapsing whitespace, stripping and casefolding, as in stages.validate) always
land on the same side, so no eval prompt is seen in training.

How sides are assigned. Each prompt group gets
    u = int.from_bytes(blake2b(normalised prompt, key=str(split.seed).encode(), digest_size=8).digest(), "big")
Groups are sorted by u and taken into eval from the smallest u upward until eval holds at least
target = round(eval_fraction x total pairs) pairs (halves round up). The u of the last group taken is the cut-off
c, and a pair is in eval exactly when its u <= c. Eval therefore overshoots the target by less than one group,
and the order of the input lines plays no part.

Stability under append. A prompt's u depends only on the prompt and the seed, never on the rest of the data, so
appending rows can only move the cut-off, from c_old to c_new. An old pair changes side if and only if its u lies
between the two cut-offs: u in (c_old, c_new] moves to eval when the cut-off rises, u in (c_new, c_old] moves to
train when it falls; every other old pair keeps its side, and rows appended for an old prompt join that prompt's
side unless the cut-off crosses it. How far the cut-off moves: u is uniform, so new prompts fall below c_old in
about the proportion eval_fraction, and c_new lands near c_old, off by the chance deviation of that count (of
order sqrt(eval_fraction x new pairs x mean group size) pairs) plus at most one group. Example (tests/test_split.py):
appending 1,010 pairs of new prompts to 5,091 pairs moved 11 old pairs (0.2%); the test requires <= 2% and checks
that every moved pair has u between the two cut-offs.

Two streaming passes: pass 1 reads u per line into a numpy uint64 array (8 bytes a line; one process per core on
large files), pass 2 copies each line byte-exact to its side, keeping input order. Outputs are written atomically.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from hashlib import blake2b
from pathlib import Path

import numpy as np

from stages.common import UserError, atomic_path, round_floats, run_main, write_json
from stages.config import SplitConfig, load

VALIDATED = Path("data/validated.jsonl")
TRAIN = Path("data/train.jsonl")
EVAL = Path("data/eval.jsonl")
METRICS = Path("metrics/split.json")
BUFFER = 1 << 20
PARALLEL_MIN_BYTES = 32 << 20  # below this, pass 1 takes about a second: not worth starting processes


def normalise(text: str) -> str:
    """Whitespace runs collapsed to one space, ends stripped, casefolded (the same rule as stages.validate)."""
    return " ".join(text.split()).casefold()


_DECODER = json.JSONDecoder()


def parse_json(text: str) -> object:
    """json.loads(text), calling the C scanner directly when nothing surrounds the value (every line validate
    writes): decode() adds two regex matches and two Python frames per line."""
    try:
        value, end = _DECODER.scan_once(text, 0)
        if end == len(text):
            return value
    except StopIteration:  # leading whitespace
        pass
    return _DECODER.decode(text)


def range_hashes(path: Path, start: int, end: int, seed: int) -> bytes:
    """The 8-byte keyed digests of the normalised prompts of the lines in the byte range [start, end)."""
    key = str(seed).encode()
    digests = bytearray()
    with open(path, "rb") as f:
        f.seek(start)
        for line in f:
            prompt = normalise(parse_json(line.rstrip(b"\r\n").decode("utf-8"))["prompt"])
            digests += blake2b(prompt.encode("utf-8"), key=key, digest_size=8).digest()
            start += len(line)
            if start >= end:
                break
    return bytes(digests)


def prompt_hashes(path: Path, seed: int) -> np.ndarray:
    """u of every line's normalised prompt, in line order.

    Parsing is the bottleneck, so a large file is cut into line-aligned byte ranges hashed by one process per core.
    """
    size = path.stat().st_size
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = 1 if size < PARALLEL_MIN_BYTES else min(cores, 8)
    ranges = line_ranges(path, 4 * workers if workers > 1 else 1)
    if len(ranges) <= 1:
        parts = [range_hashes(path, a, b, seed) for a, b in ranges]
    else:
        methods = multiprocessing.get_all_start_methods()  # fork: workers start in milliseconds
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(
                "fork" if "fork" in methods else "spawn")) as pool:
            parts = list(pool.map(range_hashes, *zip(*[(path, a, b, seed) for a, b in ranges])))
    return np.frombuffer(b"".join(parts), dtype=">u8").astype(np.uint64)


def line_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """Cut a file into at most `parts` byte ranges, each starting just after a "\\n" (so at a line start)."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            f.seek(max(size * k // parts, cuts[-1]))
            f.readline()  # validated lines are at most validate.max_line_bytes long
            cuts.append(f.tell())
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


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


def write_sides(path: Path, in_eval: np.ndarray) -> None:
    """Copy each line of `path` byte-exact to eval (in_eval true) or train, keeping input order."""
    side_of = in_eval.astype(np.uint8).tobytes()  # indexing bytes gives ints, far cheaper than numpy scalars
    with atomic_path(TRAIN) as train_tmp, atomic_path(EVAL) as eval_tmp, \
            open(train_tmp, "wb", buffering=BUFFER) as train, open(eval_tmp, "wb", buffering=BUFFER) as evals:
        outs = (train, evals)
        with open(path, "rb") as f:
            for i, line in enumerate(f):
                outs[side_of[i]].write(line)


def main(cfg: SplitConfig) -> None:
    if not VALIDATED.exists():
        raise UserError(f"{VALIDATED} not found: run the validate stage first (dvc repro split)")
    u = prompt_hashes(VALIDATED, cfg.seed)
    if not len(u):
        raise UserError(f"{VALIDATED} is empty: nothing to split")
    in_eval = u <= eval_cutoff(u, cfg.eval_fraction)
    write_sides(VALIDATED, in_eval)

    eval_u, train_u = np.unique(u[in_eval]), np.unique(u[~in_eval])
    on_both = len(np.intersect1d(eval_u, train_u, assume_unique=True))
    if on_both:  # cannot happen with one cut-off; checked on the assignment written, so the metric is measured
        raise RuntimeError(f"{on_both} prompts landed on both sides")
    eval_pairs = int(in_eval.sum())
    write_json(METRICS, round_floats({
        "train_pairs": len(u) - eval_pairs, "eval_pairs": eval_pairs,
        "train_prompts": len(train_u), "eval_prompts": len(eval_u),
        "prompts_on_both_sides": on_both, "eval_fraction_actual": eval_pairs / len(u)}))
    print(f"split: {len(u) - eval_pairs} train pairs ({len(train_u)} prompts), {eval_pairs} eval pairs "
          f"({len(eval_u)} prompts), eval fraction {eval_pairs / len(u):.4f} (target {cfg.eval_fraction})")


if __name__ == "__main__":
    run_main(lambda: main(load(SplitConfig)))
