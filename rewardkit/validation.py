"""Validate a preference JSONL: every line is either kept byte-exact or rejected with its line number and reason.

Outputs, all written atomically:
- validated: the kept lines with their bytes unchanged (only a UTF-8 BOM on line 1 is dropped and every line ends
  in "\\n"), so extra fields such as `id`, `source` or `margin` pass through untouched;
- rejects: one {"line", "reason", "detail", "excerpt"} object per rejected line, plus "duplicate_of" (duplicate,
  near_duplicate) or "contradicts" (contradictory) naming the other line;
- metrics: lines_read = kept + rejected, and the count of every reason.

Per-line rules are in `rewardkit.checks`. The last three reasons compare lines with each other, among the lines
that passed the per-line checks: `duplicate` (same prompt/chosen/rejected as an earlier line), `near_duplicate`
(the same after `normalise` of all three fields) and `contradictory` (two lines prefer opposite responses for the
same prompt, under the same normalisation; both go out).

Scale: two streaming passes over the raw bytes. Pass 1 parses each line once and keeps a 1-byte reason code and,
for lines that pass, three 8-byte blake2b digests; duplicates and contradictions are then found by sorting the
digests with numpy. Pass 2 re-reads the bytes, copies kept lines and recomputes the detail text of rejected lines
only. Two different rows share an 8-byte digest with probability about n²/2⁶⁵.
"""
from __future__ import annotations

import json
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rewardkit.checks import CODE, OK, REASONS, check_line
from rewardkit.config import ValidateConfig
from rewardkit.errors import UserError
from rewardkit.io import atomic_path, round_floats, write_json
from rewardkit.lines import CHUNK, default_workers, file_lines, map_line_ranges

EXCERPT_CHARS = 120


@dataclass(frozen=True)
class ValidateOutputs:
    validated: Path
    rejects: Path
    metrics: Path


def check_range(path: Path, start: int, end: int, limit: int) -> tuple[bytes, bytes]:
    """Reason codes (1 byte a line) and digests (24 bytes a line that passed) of the lines in [start, end)."""
    codes = array("b")
    digests = bytearray()
    for line in file_lines(path, limit, start, end):
        code, _, keys = check_line(line, limit)
        codes.append(code)
        digests += keys  # empty for rejected lines
    return codes.tobytes(), bytes(digests)


def first_pass(path: Path, limit: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Per line: the reason code (OK if it passed the per-line checks) and, for OK lines, (n_ok, 3) uint64 digests.
    Parsing is the bottleneck, so large files are checked on `workers` processes."""
    parts = map_line_ranges(check_range, path, workers, limit)
    codes = np.frombuffer(b"".join(p[0] for p in parts), dtype=np.int8).copy()
    return codes, np.frombuffer(b"".join(p[1] for p in parts), dtype=np.uint64).reshape(-1, 3)


def first_of_key(keys: np.ndarray) -> np.ndarray:
    """For each position, the earliest position holding the same key (itself when it is the first)."""
    order = np.argsort(keys, kind="stable")  # stable: within a key, positions stay in line order
    sorted_keys = keys[order]
    starts = np.ones(len(keys), dtype=bool)
    starts[1:] = sorted_keys[1:] != sorted_keys[:-1]
    run_start = np.maximum.accumulate(np.where(starts, np.arange(len(keys)), 0))
    first = np.empty_like(order)
    first[order] = order[run_start]
    return first


def compare_lines(codes: np.ndarray, digests: np.ndarray) -> np.ndarray:
    """Mark duplicates, near-duplicates and contradictions in `codes`; return the other line (1-based) per line."""
    other = np.zeros(len(codes), dtype=np.int64)
    alive_lines = np.flatnonzero(codes == OK)  # line index of each digest row
    alive = np.arange(len(alive_lines))  # digest rows not yet rejected
    for column, reason in ((0, "duplicate"), (1, "near_duplicate")):
        first = alive[first_of_key(digests[alive, column])]
        repeated = first != alive
        codes[alive_lines[alive[repeated]]] = CODE[reason]
        other[alive_lines[alive[repeated]]] = alive_lines[first[repeated]] + 1
        alive = alive[~repeated]
    # Normalised keys are now unique, so a line's reversed key matches at most one other line's key.
    keys, reversed_keys = digests[alive, 1], digests[alive, 2]
    if not len(keys):
        return other
    order = np.argsort(keys)
    at = np.minimum(np.searchsorted(keys[order], reversed_keys), len(keys) - 1)
    hit = keys[order][at] == reversed_keys
    codes[alive_lines[alive[hit]]] = CODE["contradictory"]
    other[alive_lines[alive[hit]]] = alive_lines[alive[order[at[hit]]]] + 1
    return other


def reject_record(number: int, code: int, line: bytes, other: int, limit: int) -> bytes:
    record = {"line": number, "reason": REASONS[code - 1]}
    if code in (CODE["duplicate"], CODE["near_duplicate"]):
        how = "" if code == CODE["duplicate"] else " after collapsing whitespace and ignoring case"
        record["detail"] = f"same prompt, chosen and rejected as line {other}{how}"
        record["duplicate_of"] = other
    elif code == CODE["contradictory"]:
        record["detail"] = f"line {other} prefers the opposite response for the same prompt; both are rejected"
        record["contradicts"] = other
    else:
        record["detail"] = check_line(line, limit)[1]
    record["excerpt"] = line[: 4 * EXCERPT_CHARS].decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def second_pass(path: Path, limit: int, codes: np.ndarray, other: np.ndarray, kept: BinaryIO | None,
                rejects: BinaryIO) -> None:
    """Copy kept lines to `kept` (when given) and write a record per rejected line to `rejects`."""
    code_of = codes.tobytes()  # indexing bytes gives ints, far cheaper than numpy scalars
    n = 0
    for n, line in enumerate(file_lines(path, limit), start=1):
        if n > len(code_of):
            break
        if code_of[n - 1] == OK:
            if kept is not None:
                kept.write(line)
                kept.write(b"\n")
        else:
            rejects.write(reject_record(n, code_of[n - 1], line, int(other[n - 1]), limit))
    if n != len(code_of):
        raise UserError(f"{path} changed while it was being validated (its line count changed); run again")


def check_data_file(path: Path) -> None:
    """Fail with one clear line on inputs that are not a readable, non-empty UTF-8 file."""
    where = f"{path} (data.path in params.yaml points there)"
    if not path.exists():
        raise UserError(f"data file not found: {where}")
    if path.is_dir():
        raise UserError(f"data file is a directory: {where}; point data.path at a JSONL file")
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise UserError(f"cannot read data file {where}: {e.strerror}") from None
    if not head:
        raise UserError(f"data file is empty (0 bytes): {where}")
    # UTF-16 without a BOM: ASCII characters (all JSON syntax) come with a NUL byte each; text that is mostly
    # CJK has few of them, but then the file still starts with "{" next to a NUL.
    nuls = head.count(0)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        why = "it starts with a UTF-16 byte-order mark"
    elif nuls > len(head) // 4 or head.startswith((b"{\x00", b"\x00{")):
        why = f"{nuls} of its first {len(head)} bytes are NUL"
    else:
        return
    raise UserError(f"{path} looks like UTF-16 ({why}); re-save it as UTF-8")


def top_reasons(counts: Counter, k: int = 3) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in counts.most_common(k) if n)


def validate_file(path: Path, out: ValidateOutputs, cfg: ValidateConfig, workers: int | None = None) -> dict:
    """Validate `path` into `out`; returns the metrics. Raises a UserError (after writing the rejects and the
    metrics, so the user can inspect them) when no line or too many lines were kept."""
    check_data_file(path)
    workers = default_workers(path) if workers is None else workers
    codes, digests = first_pass(path, cfg.max_line_bytes, workers)
    other = compare_lines(codes, digests)

    lines_read = len(codes)
    if not lines_read:
        raise UserError(f"data file has no lines (only a byte-order mark): {path}")
    by_code = np.bincount(codes, minlength=len(REASONS) + 1)
    counts = Counter({reason: int(by_code[CODE[reason]]) for reason in REASONS})
    kept, rejected = int(by_code[OK]), lines_read - int(by_code[OK])
    fraction = rejected / lines_read
    failure = None
    if kept == 0:
        failure = (f"no valid pairs in {path}: all {lines_read} lines rejected, see {out.rejects}; "
                   f"top reasons: {top_reasons(counts)}")
    elif fraction > cfg.max_reject_fraction:
        failure = (f"{rejected} of {lines_read} lines of {path} rejected: reject fraction {fraction:.4f} > "
                   f"validate.max_reject_fraction {cfg.max_reject_fraction}; top reasons: {top_reasons(counts)}; "
                   f"see {out.rejects}")

    with atomic_path(out.rejects) as rejects_tmp, open(rejects_tmp, "wb") as rejects:
        if failure:
            out.validated.unlink(missing_ok=True)
            second_pass(path, cfg.max_line_bytes, codes, other, None, rejects)
        else:
            with atomic_path(out.validated) as kept_tmp, open(kept_tmp, "wb", buffering=CHUNK) as kept_file:
                second_pass(path, cfg.max_line_bytes, codes, other, kept_file, rejects)
    metrics = round_floats({"lines_read": lines_read, "kept": kept, "rejected": rejected,
                            "rejected_by_reason": dict(counts), "reject_fraction": fraction})
    write_json(out.metrics, metrics)
    if failure:
        raise UserError(failure)
    print(f"validate: kept {kept} of {lines_read} lines of {path}"
          + (f"; rejected {rejected} ({top_reasons(counts)}), see {out.rejects}" if rejected else ""))
    return metrics
