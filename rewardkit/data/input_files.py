"""One input file of the validate stage, whatever its kind and format: the checks of its rows (pass 1, in
parallel byte ranges for plain JSONL) and the rows again for writing (pass 2).

A row is a raw line (bytes) for JSONL and gzipped JSONL, a dict for Parquet. Kept rows of the explicit format
are copied byte-exact; rows of the other formats, rows from Parquet and rows that need a `source` are written
as explicit JSON rows with every other field kept.
"""
from __future__ import annotations

import json
from array import array
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np

from rewardkit.data.checks import check_line, check_row
from rewardkit.data.formats import EXPLICIT, row_format, to_explicit_row
from rewardkit.data.lines import file_lines, map_line_ranges, parse_json
from rewardkit.data.readers import JSONL, PARQUET, file_kind, gzip_lines, parquet_rows

SNIFF_ROWS = 10_000  # rows read to detect a file's format: the first row that names its fields decides


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
    def __init__(self, path: Path, limit: int):
        self.path, self.limit, self.kind = path, limit, file_kind(path)
        self.format = self._detect_format()

    def rows(self) -> Iterator[bytes | dict]:
        """Every row in file order: raw lines (without their ending) or, for Parquet, dicts."""
        if self.kind == PARQUET:
            return parquet_rows(self.path)
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

    def check(self, row: bytes | dict) -> tuple[int, str, bytes]:
        if isinstance(row, dict):
            return check_row(row, self.format, null_margin=True)
        return check_line(row, self.limit, self.format)

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

    def kept_line(self, row: bytes | dict, source: str | None) -> bytes:
        """The kept row as written to the validated file (without its newline): the line byte-exact when it is
        explicit and needs no source, else the explicit row as JSON (with `source` when given and missing)."""
        if isinstance(row, bytes):
            if self.format == EXPLICIT and source is None:
                return row
            row = json.loads(row)
        explicit = to_explicit_row(row, self.format) if self.format != EXPLICIT else row
        if source is not None and "source" not in explicit:
            explicit["source"] = source
        return json.dumps(explicit, ensure_ascii=False, default=str).encode("utf-8")  # Parquet dates etc. as text

    def excerpt(self, row: bytes | dict, chars: int) -> str:
        raw = row if isinstance(row, bytes) else json.dumps(row, ensure_ascii=False, default=str).encode("utf-8")
        return raw[: 4 * chars].decode("utf-8", errors="replace")[:chars]
