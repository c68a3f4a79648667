"""Per-row rules of the validate stage: each row gets the first reason in REASONS that applies, or OK.

A file's rows are read in the format detected for the file (`rewardkit.data.formats`); rows of conversational formats
are checked on their plain rendering. The last three reasons compare rows with each other (see
`rewardkit.data.validation`); the rest are decided here, one row at a time. This runs once per input row: the explicit
format's happy path is kept flat on purpose.
"""
from __future__ import annotations

import json
import math
from hashlib import blake2b

from rewardkit.data.answers import EXPANDED_FROM, answers, expanded_rows, has_answer_lists
from rewardkit.data.formats import (
    EXPLICIT,
    RowProblem,
    explicit_fields,
    render_plain_prompt,
    render_plain_response,
    row_format,
)
from rewardkit.data.lines import NonFiniteLiteral, parse_json
from rewardkit.text import json_kind, normalise

OK = 0
REASONS = ("line_too_long", "blank_line", "invalid_utf8", "not_json", "not_object", "format_mismatch",
           "missing_field", "not_a_string", "bad_messages", "empty_text", "nul_byte", "lone_surrogate",
           "no_shared_prompt", "bad_margin", "chosen_equals_rejected", "duplicate", "near_duplicate", "contradictory")
CODE = {name: i + 1 for i, name in enumerate(REASONS)}  # 0 means kept
FIELDS = ("prompt", "chosen", "rejected")


def check_line(line: bytes, limit: int, fmt: str = EXPLICIT) -> tuple[int, str, bytes]:
    """(reason code, detail, b"") for a bad line; (OK, "", digests) for a good one. See `check_row`."""
    if len(line) > limit:
        return CODE["line_too_long"], f"longer than validate.max_line_bytes = {limit:,} bytes; not parsed", b""
    try:
        row = parse_json(line.decode("utf-8"))
    except UnicodeDecodeError as e:
        return CODE["invalid_utf8"], f"not valid UTF-8 at byte {e.start + 1}: {e.reason}", b""
    except NonFiniteLiteral as e:
        return CODE["not_json"], f"not valid JSON: {e} is not a JSON value (write a number or null)", b""
    except json.JSONDecodeError as e:
        if not line.strip():
            return CODE["blank_line"], "the line is empty or only whitespace", b""
        return CODE["not_json"], f"not valid JSON: {e.msg} at column {e.colno} (char {e.pos})", b""
    if type(row) is not dict:
        return CODE["not_object"], f"expected a JSON object with prompt/chosen/rejected, got {json_kind(row)}", b""
    return check_row(row, fmt)


def check_value_size(row: object, limit: int) -> tuple[int, str, bytes] | None:
    """The `line_too_long` reject for a Parquet row or JSON array element whose compact JSON is longer than
    `validate.max_line_bytes`, so the limit means the same whatever the file kind; None when it fits."""
    size = len(json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8"))
    if size <= limit:
        return None
    return CODE["line_too_long"], f"{size:,} bytes as JSON, longer than validate.max_line_bytes = {limit:,}", b""


def check_row(row: dict, fmt: str = EXPLICIT, null_margin: bool = False) -> tuple[int, str, bytes]:
    """(reason code, detail, b"") for a bad row of a `fmt` file; (OK, "", digests) for a good one.

    `digests` is 24 bytes: the 8-byte blake2b of prompt/chosen/rejected exactly, normalised, and normalised with
    chosen and rejected swapped (to find contradictions). The fields are joined by NUL, which no kept field holds,
    so the join is unambiguous. null_margin: a null margin counts as absent (Parquet columns hold nulls).
    """
    if fmt != EXPLICIT and has_answer_lists(row):
        return check_answer_lists(row, fmt, null_margin)
    if fmt != EXPLICIT or "prompt" not in row or type(row["prompt"]) is not str:
        found = row_format(row)
        if found is not None and found != fmt:
            return CODE["format_mismatch"], f"a row in the {found} format in a file detected as {fmt}", b""
    if fmt == EXPLICIT:
        try:
            texts = prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
        except KeyError:
            missing = [name for name in FIELDS if name not in row]
            return CODE["missing_field"], f"missing field(s): {', '.join(missing)}", b""
        if not (type(prompt) is str and type(chosen) is str and type(rejected) is str):
            if type(prompt) is str and has_answer_lists(row):  # off the hot path: only rows that fail the test
                return check_answer_lists(row, fmt, null_margin)
            name, value = next((n, v) for n, v in zip(FIELDS, texts) if type(v) is not str)
            return CODE["not_a_string"], f"field '{name}' must be a string, got {json_kind(value)}", b""
    else:
        try:
            parts = explicit_fields(row, fmt)
        except RowProblem as e:
            return CODE[e.reason], str(e), b""
        if any(not m["content"].strip() for part in parts if isinstance(part, list) for m in part):
            name, i = next((n, i) for n, part in zip(FIELDS, parts) if isinstance(part, list)
                           for i, m in enumerate(part, 1) if not m["content"].strip())
            return CODE["empty_text"], f"{name} message {i} has empty content", b""
        texts = prompt, chosen, rejected = (render_plain_prompt(parts[0]), render_plain_response(parts[1]),
                                            render_plain_response(parts[2]))
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
    if "margin" in row and not _finite_number(row["margin"]) and not (null_margin and row["margin"] is None):
        margin = row["margin"]
        got = json_kind(margin) if json_kind(margin) != "a number" else f"{margin!r:.40} (beyond the range of a float)"
        return CODE["bad_margin"], f"field 'margin' must be a finite number, got {got}", b""
    if norm[1] == norm[2]:
        how = "identical" if chosen == rejected else "identical after collapsing whitespace and ignoring case"
        return CODE["chosen_equals_rejected"], f"chosen and rejected are {how}", b""
    return OK, "", (blake2b(exact, digest_size=8).digest()
                    + blake2b("\0".join(norm).encode("utf-8"), digest_size=8).digest()
                    + blake2b(f"{norm[0]}\0{norm[2]}\0{norm[1]}".encode("utf-8"), digest_size=8).digest())


def check_answer_lists(row: dict, fmt: str, null_margin: bool) -> tuple[int, str, bytes]:
    """`check_row` for a row with lists of answers (`rewardkit.data.answers`): it passes when every chosen x
    rejected pair passes; else it gets the first failing pair's reason, naming the two answers.

    Its digests stand for the whole row: exact and normalised are the blake2b of its pairs' digests in order, and
    swapped is what the normalised one would be for the row with its chosen and rejected lists exchanged, so
    duplicates and contradictions between such rows are found as between single pairs."""
    if "prompt" not in row:
        return CODE["missing_field"], "a row with lists of answers needs a 'prompt' field", b""
    if EXPANDED_FROM in row:
        return CODE["format_mismatch"], f"field '{EXPANDED_FROM}' is written by validate; rename it", b""
    n_chosen, n_rejected = len(answers(row, "chosen")), len(answers(row, "rejected"))
    digests = []
    for pair in expanded_rows(row):
        code, detail, keys = check_row(pair, fmt, null_margin)
        if code != OK:
            at = pair[EXPANDED_FROM]
            return code, f"chosen answer {at['chosen']} vs rejected answer {at['rejected']}: {detail}", b""
        digests.append(keys)
    exact = b"".join(d[:8] for d in digests)
    norm = b"".join(d[8:16] for d in digests)
    # pair (i, j) of the swapped row is rejected answer i against chosen answer j: this row's swapped pair (j, i)
    swapped = b"".join(digests[j * n_rejected + i][16:] for i in range(n_rejected) for j in range(n_chosen))
    return OK, "", b"".join(blake2b(part, digest_size=8).digest() for part in (exact, norm, swapped))


def _finite_number(value: object) -> bool:
    if type(value) not in (int, float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False
