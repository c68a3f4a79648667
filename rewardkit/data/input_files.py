"""One input file of the validate stage, whatever its kind and format: the checks of its rows (pass 1, in
parallel byte ranges for plain JSONL) and the rows again for writing (pass 2).

A row is a raw line (bytes) for JSONL and gzipped JSONL, a parsed value for Parquet, Arrow (`datasets`) and JSON
arrays. Kept rows of
the explicit format are copied byte-exact; rows of the other formats, rows from Parquet or JSON arrays, rows with
lists of answers (`rewardkit.data.answers`: one output row per chosen x rejected pair) and rows that need a `source`
are written as explicit JSON rows with every other field kept. Rows are numbered as their file counts them: JSONL
lines from 1, JSON array elements and `datasets` rows by their 0-based index, as `ds[i]` counts (`row_label`).
"""
from __future__ import annotations

import json
from array import array
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np

from rewardkit.data.answers import EXPANDED_FROM, expanded_rows, has_answer_lists
from rewardkit.data.arrow_files import arrow_rows
from rewardkit.data.checks import CODE, check_line, check_row, check_value_size
from rewardkit.data.formats import EXPLICIT, row_format, to_explicit_row
from rewardkit.data.lines import file_lines, map_line_ranges, parse_json
from rewardkit.data.readers import (
    ARROW,
    JSON_ARRAY,
    JSON_ARRAY_GZ,
    JSONL,
    PARQUET,
    SAVED_DATASET,
    file_kind,
    gzip_lines,
    json_array_rows,
    parquet_rows,
)
from rewardkit.text import json_kind

SNIFF_ROWS = 10_000  # rows read to detect a file's format: the first row that names its fields decides
INDEXED = (JSON_ARRAY, JSON_ARRAY_GZ, ARROW, SAVED_DATASET)  # kinds whose rows are named by a 0-based index
COLUMNAR = (PARQUET, ARROW, SAVED_DATASET)  # kinds with typed columns, where a missing margin is a null


def check_range(path: Path, start: int, end: int, limit: int, fmt: str) -> tuple[bytes, bytes]:
    """Reason codes (1 byte a line) and digests (24 bytes a line that passed) of the lines in [start, end)."""
    codes = array("b")
    digests = bytearray()
    for line in file_lines(path, limit, start, end):
        code, _, keys = check_line(line, limit, fmt)
        codes.append(code)
        digests += keys  # empty for rejected lines
    return codes.tobytes(), bytes(digests)


class InputFile:
    def __init__(self, path: Path, limit: int, tag_rows: bool = False):
        """tag_rows: give every kept row an `expanded_from` field (its row index and answer indexes), as extra
        sets need to score per answer; otherwise only rows expanded from lists of answers get one."""
        self.path, self.limit, self.kind, self.tag_rows = path, limit, file_kind(path), tag_rows
        self.format = self._detect_format()
        self.pairs_written = self.multi_answer_rows = 0

    def row_label(self, number: int) -> tuple[str, int]:
        """How a reject names row `number` (1-based in file order): ("index", number - 1) for the elements
        of a JSON array and the rows of a `datasets` dataset or .arrow file, counted from 0 as their indexes are;
        ("line", number) for every other file."""
        return ("index", number - 1) if self.kind in INDEXED else ("line", number)

    def rows(self) -> Iterator[bytes | dict]:
        """Every row in file order: raw lines (without their ending) or, for Parquet, Arrow and JSON arrays,
        values."""
        if self.kind == PARQUET:
            return parquet_rows(self.path)
        if self.kind in (ARROW, SAVED_DATASET):
            return arrow_rows(self.path)
        if self.kind in (JSON_ARRAY, JSON_ARRAY_GZ):
            return json_array_rows(self.path)
        if self.kind == JSONL:
            return file_lines(self.path, self.limit)
        return gzip_lines(self.path, self.limit)

    def _detect_format(self) -> str:
        for row in islice(self.rows(), SNIFF_ROWS):
            if isinstance(row, bytes):
                try:
                    row = parse_json(row.decode("utf-8")) if len(row) <= self.limit else None
                except ValueError:  # undecodable or not JSON: this row says nothing about the format
                    continue
            if isinstance(row, dict) and (found := row_format(row)) is not None:
                return found
        return EXPLICIT

    def check(self, row: bytes | object) -> tuple[int, str, bytes]:
        if isinstance(row, bytes):
            return check_line(row, self.limit, self.format)
        if not isinstance(row, dict):  # a JSON array's element
            return CODE["not_object"], f"expected a JSON object with prompt/chosen/rejected, got {json_kind(row)}", b""
        if (too_long := check_value_size(row, self.limit)) is not None:
            return too_long
        return check_row(row, self.format, null_margin=self.kind in COLUMNAR)

    def first_pass(self, workers: int) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the reason code (OK if it passed the per-row checks) and, for OK rows, (n_ok, 3) uint64
        digests. Parsing is the bottleneck, so a large plain JSONL file is checked on `workers` processes."""
        if self.kind == JSONL:
            parts = map_line_ranges(check_range, self.path, workers, self.limit, self.format)
        else:
            codes, digests = array("b"), bytearray()
            for row in self.rows():
                code, _, keys = self.check(row)
                codes.append(code)
                digests += keys
            parts = [(codes.tobytes(), bytes(digests))]
        codes = np.frombuffer(b"".join(p[0] for p in parts), dtype=np.int8).copy()
        return codes, np.frombuffer(b"".join(p[1] for p in parts), dtype=np.uint64).reshape(-1, 3)

    def kept_line(self, row: bytes | dict, source: str | None, number: int) -> bytes:
        """The kept row `number` (1-based) as written to the validated file (without the last newline): the line
        byte-exact when it is explicit, has no list of answers and needs no source or tag, else the explicit
        row(s) as JSON lines (with `source` when given and missing). Counts pairs and multi-answer rows."""
        raw = row if isinstance(row, bytes) else None
        if raw is not None:
            # a line without "[" holds no list, so no list of answers: it is copied without parsing
            if self.format == EXPLICIT and source is None and not self.tag_rows and b"[" not in raw:
                self.pairs_written += 1
                return raw
            row = json.loads(raw)
        multi = has_answer_lists(row)
        pairs = expanded_rows(row) if multi else [row]
        self.pairs_written += len(pairs)
        self.multi_answer_rows += multi
        if raw is not None and not multi and self.format == EXPLICIT and source is None and not self.tag_rows:
            return raw
        return b"\n".join(self._explicit_line(pair, source, number) for pair in pairs)

    def _explicit_line(self, row: dict, source: str | None, number: int) -> bytes:
        explicit = to_explicit_row(row, self.format) if self.format != EXPLICIT else row
        if source is not None and "source" not in explicit:
            explicit["source"] = source
        if EXPANDED_FROM in explicit or self.tag_rows:
            explicit[EXPANDED_FROM] = {"row": number - 1, "chosen": 0, "rejected": 0,
                                       **explicit.get(EXPANDED_FROM, {})}
        return json.dumps(explicit, ensure_ascii=False, default=str).encode("utf-8")  # Parquet dates etc. as text

    def excerpt(self, row: bytes | dict, chars: int) -> str:
        raw = row if isinstance(row, bytes) else json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")
        return raw[: 4 * chars].decode("utf-8", errors="replace")[:chars]
