"""Validate preference files: every row is either kept or rejected with its file, row number and reason.

Outputs, all written atomically:
- validated: the kept rows as JSONL with explicit prompt/chosen/rejected fields (see `rewardkit.data.input_files`:
  explicit JSONL lines byte-exact, other formats converted, every other field such as `id`, `source` or `margin`
  kept; with several input files each row gets the `source` of its file unless it has one);
- rejects: one {"file", "line", "reason", "detail", "excerpt"} object per rejected row ("index", the 0-based
  array index, instead of "line" for a JSON array's element), plus "duplicate_of" (duplicate, near_duplicate) or
  "contradicts" (contradictory) naming the other row's line or index (and its file as "other_file" when it is
  another one);
- metrics: lines_read = kept + rejected, the count of every reason, each file's format and counts; with rows holding
  lists of answers (`rewardkit.data.answers`), multi_answer_rows and pairs, the chosen x rejected pairs written.

Per-row rules are in `rewardkit.data.checks`. The last three reasons compare rows with each other, across all files,
among the rows that passed the per-row checks: `duplicate` (same prompt/chosen/rejected as an earlier row),
`near_duplicate` (the same after `normalise` of all three fields) and `contradictory` (two rows prefer opposite
responses for the same prompt, under the same normalisation; both go out).

Scale: two streaming passes. Pass 1 parses each row once and keeps a 1-byte reason code and, for rows that pass,
three 8-byte blake2b digests; duplicates and contradictions are then found by sorting the digests with numpy.
Pass 2 re-reads the rows, writes kept rows and recomputes the detail text of rejected rows only. Two different
rows share an 8-byte digest with probability about n²/2⁶⁵.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rewardkit.config import ValidateConfig
from rewardkit.data.arrow_files import dataset_shards, is_saved_dataset
from rewardkit.data.checks import CODE, OK, REASONS
from rewardkit.data.input_files import InputFile
from rewardkit.data.lines import CHUNK, default_workers
from rewardkit.data.readers import JSON_ARRAY, JSONL, file_kind
from rewardkit.errors import UserError
from rewardkit.io import atomic_path, round_floats, write_json

EXCERPT_CHARS = 120


@dataclass(frozen=True)
class ValidateOutputs:
    validated: Path
    rejects: Path
    metrics: Path


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


def reject_record(number: int, code: int, row, other: tuple[InputFile, int] | None, source: InputFile) -> bytes:
    """The rejects line of row `number` (1-based) of `source`; `other` is the file and row number a comparison
    reason names. Rows are named as their files count them (`InputFile.row_label`: a line, or an array index)."""
    key, at = source.row_label(number)
    record = {"file": str(source.path), key: at, "reason": REASONS[code - 1]}
    if code in (CODE["duplicate"], CODE["near_duplicate"], CODE["contradictory"]):
        other_source, other_number = other
        other_key, other_at = other_source.row_label(other_number)
        where = f"{'row index' if other_key == 'index' else 'line'} {other_at}" + (
            "" if other_source is source else f" of {other_source.path}")
        if code == CODE["contradictory"]:
            record["detail"] = f"{where} prefers the opposite response for the same prompt; both are rejected"
            record["contradicts"] = other_at
        else:
            how = "" if code == CODE["duplicate"] else " after collapsing whitespace and ignoring case"
            record["detail"] = f"same prompt, chosen and rejected as {where}{how}"
            record["duplicate_of"] = other_at
        if other_source is not source:
            record["other_file"] = str(other_source.path)
    else:
        record["detail"] = source.check(row)[1]
    record["excerpt"] = source.excerpt(row, EXCERPT_CHARS)
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def second_pass(source: InputFile, codes: np.ndarray, other_of, kept: BinaryIO | None, rejects: BinaryIO,
                add_source: bool) -> None:
    """Write the kept rows of one file to `kept` (when given) and a record per rejected row to `rejects`.
    `other_of(i)` is the (file, row number) a comparison reason names for row i of this file."""
    code_of = codes.tobytes()  # indexing bytes gives ints, far cheaper than numpy scalars
    name = source.path.name if add_source else None
    n = 0
    for n, row in enumerate(source.rows(), start=1):
        if n > len(code_of):
            break
        if code_of[n - 1] == OK:
            if kept is not None:
                kept.write(source.kept_line(row, name, n))
                kept.write(b"\n")
        else:
            other = other_of(n - 1) if code_of[n - 1] >= CODE["duplicate"] else None
            rejects.write(reject_record(n, code_of[n - 1], row, other, source))
    if n != len(code_of):
        raise UserError(f"{source.path} changed while it was being validated (its row count changed); run again")


def check_data_file(path: Path) -> None:
    """Fail with one clear line on inputs that are not a readable, non-empty file (and, for JSONL, not UTF-16)."""
    where = f"{path} (data.path in params.yaml points there)"
    if not path.exists():
        raise UserError(f"data file not found: {where}")
    if is_saved_dataset(path):
        dataset_shards(path)  # a shard state.json lists but the directory lacks: one line, before any row is read
        return
    if path.is_dir():
        raise UserError(f"data file is a directory: {where}; point data.path at a JSONL file")
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise UserError(f"cannot read data file {where}: {e.strerror}") from None
    if not head:
        raise UserError(f"data file is empty (0 bytes): {where}")
    if file_kind(path) not in (JSONL, JSON_ARRAY):
        return
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


def failure_message(counts: Counter, lines_read: int, kept: int, where: str, out: ValidateOutputs,
                    cfg: ValidateConfig) -> str | None:
    """Why the stage fails (no row kept, or more rejected than validate.max_reject_fraction), or None."""
    rejected = lines_read - kept
    if kept == 0:
        return (f"no valid pairs in {where}: all {lines_read} lines rejected, see {out.rejects}; "
                f"top reasons: {top_reasons(counts)}")
    if rejected / lines_read > cfg.max_reject_fraction:
        return (f"{rejected} of {lines_read} lines of {where} rejected: reject fraction {rejected / lines_read:.4f} "
                f"> validate.max_reject_fraction {cfg.max_reject_fraction}; top reasons: {top_reasons(counts)}; "
                f"see {out.rejects}")
    return None


def validate_metrics(sources: list[InputFile], codes: np.ndarray, starts: np.ndarray, counts: Counter) -> dict:
    """metrics/validate.json: rows read = kept + rejected, each reason's count, the format, and per file the same;
    with rows holding lists of answers, how many there were and the pairs the kept rows expand to."""
    lines_read, kept = len(codes), int((codes == OK).sum())
    multi = sum(s.multi_answer_rows for s in sources)
    expansion = {"multi_answer_rows": multi, "pairs": sum(s.pairs_written for s in sources)} if multi else {}
    return round_floats({"lines_read": lines_read, "kept": kept, "rejected": lines_read - kept, **expansion,
                         "rejected_by_reason": dict(counts), "reject_fraction": (lines_read - kept) / lines_read,
                         "format": sources[0].format if len({s.format for s in sources}) == 1 else "mixed",
                         "files": [{"path": str(s.path), "kind": s.kind, "format": s.format,
                                    "lines_read": int(starts[k + 1] - starts[k]),
                                    "kept": int((codes[starts[k]:starts[k + 1]] == OK).sum())}
                                   for k, s in enumerate(sources)]})


def validate_files(paths: Path | list[Path], out: ValidateOutputs, cfg: ValidateConfig,
                   workers: int | None = None, tag_rows: bool = False) -> dict:
    """Validate the files into `out`; returns the metrics. Raises a UserError (after writing the rejects and the
    metrics, so the user can inspect them) when no row or too many rows were kept. tag_rows: every kept row gets
    `expanded_from` (see `InputFile`)."""
    paths = [paths] if isinstance(paths, Path) else list(paths)
    for path in paths:
        check_data_file(path)
    sources = [InputFile(path, cfg.max_line_bytes, tag_rows) for path in paths]
    passes = [s.first_pass(default_workers(s.path) if workers is None else workers) for s in sources]
    codes = np.concatenate([p[0] for p in passes])
    other = compare_lines(codes, np.concatenate([p[1] for p in passes]))
    starts = np.cumsum([0] + [len(p[0]) for p in passes])

    def other_of(global_row: int) -> tuple[InputFile, int]:
        at = int(other[global_row]) - 1  # 0-based global row of the other line
        k = int(np.searchsorted(starts, at, side="right")) - 1
        return sources[k], at - int(starts[k]) + 1

    lines_read = len(codes)
    where = ", ".join(map(str, paths))
    if not lines_read:
        raise UserError(f"data file has no lines (only a byte-order mark): {where}")
    by_code = np.bincount(codes, minlength=len(REASONS) + 1)
    counts = Counter({reason: int(by_code[CODE[reason]]) for reason in REASONS})
    kept, rejected = int(by_code[OK]), lines_read - int(by_code[OK])
    failure = failure_message(counts, lines_read, kept, where, out, cfg)

    def write_rows(kept_file: BinaryIO | None, rejects: BinaryIO) -> None:
        for k, source in enumerate(sources):
            second_pass(source, codes[starts[k]:starts[k + 1]], lambda i, k=k: other_of(int(starts[k]) + i),
                        kept_file, rejects, add_source=len(sources) > 1)

    # on failure the rejects and metrics are still written, so the user can inspect them; validated is not
    with atomic_path(out.rejects) as rejects_tmp, open(rejects_tmp, "wb") as rejects:
        if failure:
            out.validated.unlink(missing_ok=True)
            write_rows(None, rejects)
        else:
            with atomic_path(out.validated) as kept_tmp, open(kept_tmp, "wb", buffering=CHUNK) as kept_file:
                write_rows(kept_file, rejects)
    metrics = validate_metrics(sources, codes, starts, counts)
    write_json(out.metrics, metrics)
    if failure:
        raise UserError(failure)
    print(f"validate: kept {kept} of {lines_read} lines of {where}"
          + (f"; rejected {rejected} ({top_reasons(counts)}), see {out.rejects}" if rejected else ""))
    return metrics
