"""Line scanning shared by the validate and split stages: byte ranges that start at line starts, lines read in
bounded memory, a fast JSON decode, and one process per core over the ranges of a large file."""
from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, TypeVar

BOM = b"\xef\xbb\xbf"
CHUNK = 1 << 20
PARALLEL_MIN_BYTES = 32 << 20  # below this a pass takes about a second: not worth starting processes

T = TypeVar("T")


class NonFiniteLiteral(ValueError):
    """NaN, Infinity and -Infinity: Python's json accepts them, JSON (and most other readers) do not."""


def _reject_constant(name: str) -> None:
    raise NonFiniteLiteral(name)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # built once: json.loads(..., kw) builds one per call


def parse_json(text: str) -> object:
    """Strict JSON decode of one line, calling the C scanner directly when nothing surrounds the value.

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


def file_lines(path: Path, limit: int, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """The lines of bytes [start, end) of `path` (the whole file by default), as `iter_lines` yields them."""
    return iter_lines(read_blocks(path, start, path.stat().st_size if end is None else end), limit)


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


def default_workers(path: Path) -> int:
    """One process per available core for big files; none extra for small ones, where starting them costs more."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 1 if path.stat().st_size < PARALLEL_MIN_BYTES else min(cores, 8)


def map_line_ranges(work: Callable[..., T], path: Path, workers: int, *args) -> list[T]:
    """[work(path, start, end, *args) for each line-aligned range], in file order, on `workers` processes.

    A few ranges per worker even out the load; the result does not depend on the number of workers.
    """
    ranges = line_ranges(path, 4 * workers if workers > 1 else 1)
    if len(ranges) <= 1:
        return [work(path, start, end, *args) for start, end in ranges]
    methods = multiprocessing.get_all_start_methods()  # fork: workers start in milliseconds, modules inherited
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        columns = zip(*[(path, start, end, *args) for start, end in ranges])
        return list(pool.map(work, *columns))
