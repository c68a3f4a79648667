"""Validate the preference JSONL: every line is either kept byte-exact or rejected with a reason.

Outputs, all written atomically:
- `data/validated.jsonl`: the kept lines with their bytes unchanged (only a UTF-8 BOM on line 1 is dropped and
  every line ends in "\\n"), so extra fields such as `id`, `source` or `margin` pass through untouched;
- `data/rejects.jsonl`: one {"line", "reason", "detail", "excerpt"} object per rejected line, plus
  "duplicate_of" (duplicate, near_duplicate) or "contradicts" (contradictory) naming the other line;
- `metrics/validate.json`: lines_read = kept + rejected, and the count of every reason.

A line gets the first reason that applies, in the order of REASONS. The last three compare lines with each other,
among the lines that passed the per-line checks: `duplicate` (same prompt/chosen/rejected as an earlier line),
`near_duplicate` (the same after collapsing whitespace and casefolding all three fields) and `contradictory`
(two lines prefer opposite responses for the same prompt, under the same normalisation; both go out).

Scale: two streaming passes over the raw bytes. Pass 1 parses each line once and keeps a 1-byte reason code and,
for lines that pass the per-line checks, three 8-byte blake2b digests (~25 bytes a line in all); duplicates and
contradictions are then found by sorting the digests with numpy. Pass 2 re-reads the bytes, copies kept lines and
recomputes the detail text of rejected lines only. Two different rows share an 8-byte digest with probability
about n²/2⁶⁵ (3e-8 for a million lines).
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
from array import array
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from hashlib import blake2b
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from stages.common import UserError, atomic_path, round_floats, run_main, write_json
from stages.config import DataConfig, ValidateConfig, load

VALIDATED = Path("data/validated.jsonl")
REJECTS = Path("data/rejects.jsonl")
METRICS = Path("metrics/validate.json")

OK = 0
REASONS = ("line_too_long", "blank_line", "invalid_utf8", "not_json", "not_object", "missing_field", "not_a_string",
           "empty_text", "nul_byte", "lone_surrogate", "bad_margin", "chosen_equals_rejected",
           "duplicate", "near_duplicate", "contradictory")
CODE = {name: i + 1 for i, name in enumerate(REASONS)}  # 0 means kept
FIELDS = ("prompt", "chosen", "rejected")
BOM = b"\xef\xbb\xbf"
CHUNK = 1 << 20
PARALLEL_MIN_BYTES = 32 << 20  # below this, pass 1 takes about a second: not worth starting processes
EXCERPT_CHARS = 120


class _NonFiniteLiteral(ValueError):
    """NaN, Infinity and -Infinity: Python's json accepts them, JSON (and most other readers) do not."""


def _reject_constant(name: str) -> None:
    raise _NonFiniteLiteral(name)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # built once: json.loads(..., kw) builds one per call


def parse_json(text: str) -> object:
    """`_DECODER.decode(text)`, calling the C scanner directly when nothing surrounds the value (most lines).

    decode() adds two regex whitespace matches and two Python frames to every line; errors and lines with
    surrounding whitespace still go through it, so messages and results are the same.
    """
    try:
        value, end = _DECODER.scan_once(text, 0)
        if end == len(text):
            return value
    except StopIteration:  # no value at position 0: leading whitespace, or not JSON at all
        pass
    return _DECODER.decode(text)


def normalise(text: str) -> str:
    """Whitespace runs collapsed to one space, ends stripped, casefolded: the key of near-duplicates."""
    return " ".join(text.split()).casefold()


def kind(value: object) -> str:
    """The JSON type of a parsed value with its article, for messages: "null", "a bool", "an object", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    return {int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}[type(value)]


def read_blocks(path: Path, start: int, end: int) -> Iterator[bytes]:
    """The bytes [start, end) of a file in blocks of about CHUNK; a BOM at offset 0 is dropped.

    A block never ends in "\\r" before `end`, so a "\\r\\n" is never torn in two.
    """
    at_file_start = start == 0
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0 and (block := f.read(min(CHUNK, left))):
            left -= len(block)
            if block.endswith(b"\r") and left > 0:
                block += f.read(1)
                left -= 1
            if at_file_start:
                block, at_file_start = block.removeprefix(BOM), False
            yield block


def iter_lines(blocks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    """Yield each line without its ending ("\\n", "\\r\\n" or a lone "\\r").

    A line longer than `limit` bytes is yielded cut to its first limit+1 bytes, so one huge line never sits in
    memory whole: the caller sees len(line) > limit and rejects it unparsed.
    """
    head = b""  # the start of a line whose end is in a later block
    for block in blocks:
        for piece in block.splitlines(keepends=True):
            if piece.endswith((b"\n", b"\r")):
                line = head + piece if head else piece
                head = b""
                yield line.rstrip(b"\r\n")[: limit + 1]
            else:  # only the last piece of a block can lack an ending
                head = (head + piece)[: limit + 1]
    if head:  # a last line without a newline
        yield head


def line_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """Cut a file into at most `parts` byte ranges, each starting just after a "\\n" (so at a line start)."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            pos = max(size * k // parts, cuts[-1])
            f.seek(pos)
            while block := f.read(CHUNK):  # not readline: one huge line must not be read whole
                if (i := block.find(b"\n")) >= 0:
                    cuts.append(pos + i + 1)
                    break
                pos += len(block)
            else:  # no "\n" up to the end (e.g. "\r" line endings): the last range runs to the end
                break
    cuts.append(size)
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def check_line(line: bytes, limit: int) -> tuple[int, str, bytes]:
    """(reason code, detail, b"") for a bad line; (OK, "", digests) for a good one.

    `digests` is 24 bytes: the 8-byte blake2b of prompt/chosen/rejected exactly, normalised, and normalised with
    chosen and rejected swapped (to find contradictions). The fields are joined by NUL, which no kept field holds,
    so the join is unambiguous. This runs once per line: the happy path is kept flat on purpose.
    """
    if len(line) > limit:
        return CODE["line_too_long"], f"longer than validate.max_line_bytes = {limit:,} bytes; not parsed", b""
    try:
        row = parse_json(line.decode("utf-8"))
    except UnicodeDecodeError as e:
        return CODE["invalid_utf8"], f"not valid UTF-8 at byte {e.start + 1}: {e.reason}", b""
    except _NonFiniteLiteral as e:
        return CODE["not_json"], f"not valid JSON: {e} is not a JSON value (write a number or null)", b""
    except json.JSONDecodeError as e:
        if not line.strip():
            return CODE["blank_line"], "the line is empty or only whitespace", b""
        return CODE["not_json"], f"not valid JSON: {e.msg} at column {e.colno} (char {e.pos})", b""
    if type(row) is not dict:
        return CODE["not_object"], f"expected a JSON object with prompt/chosen/rejected, got {kind(row)}", b""
    try:
        texts = prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
    except KeyError:
        missing = [name for name in FIELDS if name not in row]
        return CODE["missing_field"], f"missing field(s): {', '.join(missing)}", b""
    if not (type(prompt) is str and type(chosen) is str and type(rejected) is str):
        name, value = next((n, v) for n, v in zip(FIELDS, texts) if type(v) is not str)
        return CODE["not_a_string"], f"field '{name}' must be a string, got {kind(value)}", b""
    norm = normalise(prompt), normalise(chosen), normalise(rejected)
    if not (norm[0] and norm[1] and norm[2]):
        empty = [name for name, text in zip(FIELDS, norm) if not text]
        return CODE["empty_text"], f"empty or whitespace-only field(s): {', '.join(empty)}", b""
    if "\x00" in prompt or "\x00" in chosen or "\x00" in rejected:
        name = next(n for n, t in zip(FIELDS, texts) if "\x00" in t)
        return CODE["nul_byte"], f"field '{name}' contains a NUL (\\u0000) character", b""
    try:
        exact = "\0".join(texts).encode("utf-8")
    except UnicodeEncodeError:  # only a lone surrogate (a "\\ud83d" escape without its pair) fails to encode
        name = next(n for n, t in zip(FIELDS, texts) if any("\ud800" <= c <= "\udfff" for c in t))
        return CODE["lone_surrogate"], f"field '{name}' has an unpaired surrogate escape (\\ud800-\\udfff); " \
                                       "not valid Unicode text", b""
    if "margin" in row and not _finite_number(row["margin"]):
        margin = row["margin"]
        got = kind(margin) if kind(margin) != "a number" else f"{margin!r:.40} (beyond the range of a float)"
        return CODE["bad_margin"], f"field 'margin' must be a finite number, got {got}", b""
    if norm[1] == norm[2]:
        how = "identical" if chosen == rejected else "identical after collapsing whitespace and ignoring case"
        return CODE["chosen_equals_rejected"], f"chosen and rejected are {how}", b""
    return OK, "", (blake2b(exact, digest_size=8).digest()
                    + blake2b("\0".join(norm).encode("utf-8"), digest_size=8).digest()
                    + blake2b(f"{norm[0]}\0{norm[2]}\0{norm[1]}".encode("utf-8"), digest_size=8).digest())


def _finite_number(value: object) -> bool:
    if type(value) not in (int, float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def check_range(path: Path, start: int, end: int, limit: int) -> tuple[bytes, bytes]:
    """Reason codes (1 byte a line) and digests (24 bytes a line that passed) of the lines in [start, end)."""
    codes = array("b")
    digests = bytearray()
    for line in iter_lines(read_blocks(path, start, end), limit):
        code, _, keys = check_line(line, limit)
        codes.append(code)
        digests += keys  # empty for rejected lines
    return codes.tobytes(), bytes(digests)


def first_pass(path: Path, limit: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Per line: the reason code (OK if it passed the per-line checks) and, for OK lines, (n_ok, 3) uint64 digests.

    Parsing is the bottleneck, so large files are cut into line-aligned byte ranges checked by `workers` processes;
    the result does not depend on the number of workers.
    """
    ranges = line_ranges(path, 4 * workers if workers > 1 else 1)  # a few ranges per worker evens out the load
    if len(ranges) <= 1:
        parts = [check_range(path, *r, limit) for r in ranges]
    else:
        with ProcessPoolExecutor(workers, mp_context=_mp_context()) as pool:
            parts = list(pool.map(check_range, *zip(*[(path, a, b, limit) for a, b in ranges])))
    codes = np.frombuffer(b"".join(p[0] for p in parts), dtype=np.int8).copy()
    return codes, np.frombuffer(b"".join(p[1] for p in parts), dtype=np.uint64).reshape(-1, 3)


def default_workers(path: Path) -> int:
    """One process per available core for big files; none extra for small ones, where starting them costs more."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 1 if path.stat().st_size < PARALLEL_MIN_BYTES else min(cores, 8)


def _mp_context() -> multiprocessing.context.BaseContext:
    # fork: workers start in milliseconds and inherit the imported modules; spawn where fork does not exist
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


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
    for n, line in enumerate(iter_lines(read_blocks(path, 0, path.stat().st_size), limit), start=1):
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


def open_input(path: Path) -> None:
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


def main(data: DataConfig, cfg: ValidateConfig) -> None:
    path = Path(data.path)
    open_input(path)
    codes, digests = first_pass(path, cfg.max_line_bytes, default_workers(path))
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
        failure = (f"no valid pairs in {path}: all {lines_read} lines rejected, see {REJECTS}; "
                   f"top reasons: {top_reasons(counts)}")
    elif fraction > cfg.max_reject_fraction:
        failure = (f"{rejected} of {lines_read} lines of {path} rejected: reject fraction {fraction:.4f} > "
                   f"validate.max_reject_fraction {cfg.max_reject_fraction}; top reasons: {top_reasons(counts)}; "
                   f"see {REJECTS}")

    # On failure the rejects and metrics are still written, so the user can inspect them; validated is not.
    with atomic_path(REJECTS) as rejects_tmp, open(rejects_tmp, "wb") as rejects:
        if failure:
            VALIDATED.unlink(missing_ok=True)
            second_pass(path, cfg.max_line_bytes, codes, other, None, rejects)
        else:
            with atomic_path(VALIDATED) as kept_tmp, open(kept_tmp, "wb", buffering=CHUNK) as kept_file:
                second_pass(path, cfg.max_line_bytes, codes, other, kept_file, rejects)
    write_json(METRICS, round_floats({"lines_read": lines_read, "kept": kept, "rejected": rejected,
                                      "rejected_by_reason": dict(counts), "reject_fraction": fraction}))
    if failure:
        raise UserError(failure)
    print(f"validate: kept {kept} of {lines_read} lines of {path}"
          + (f"; rejected {rejected} ({top_reasons(counts)}), see {REJECTS}" if rejected else ""))


if __name__ == "__main__":
    run_main(lambda: main(load(DataConfig), load(ValidateConfig)))
