"""Input files in bounded memory: `.jsonl` (scanned in parallel byte ranges by `rewardkit.data.lines`), `.jsonl.gz`
(streamed through gzip) and `.parquet` (read with pyarrow in record batches)."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Iterator

from rewardkit.data.lines import BOM, CHUNK, iter_lines
from rewardkit.errors import UserError

JSONL, JSONL_GZ, PARQUET = "jsonl", "jsonl.gz", "parquet"
SUFFIXES = {".jsonl": JSONL, ".json": JSONL, ".jsonl.gz": JSONL_GZ, ".json.gz": JSONL_GZ, ".parquet": PARQUET}
PARQUET_BATCH_ROWS = 4096


def file_kind(path: Path) -> str:
    """The reader a file needs, from its name."""
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return SUFFIXES[suffix]
    raise UserError(f"{path}: unsupported file type; data files must be .jsonl, .jsonl.gz or .parquet")


def data_files(path: str | list[str], data_dir: str) -> list[Path]:
    """The files `data.path` names: one file, a list of files, or a directory (its supported files in name order).
    Every file must lie under `data.dir`, the directory dvc.yaml tracks, or DVC would not notice a change."""
    entries = [path] if isinstance(path, str) else list(path)
    files: list[Path] = []
    for entry in map(Path, entries):
        if entry.is_dir():
            found = sorted(p for p in entry.rglob("*") if p.is_file() and any(
                p.name.lower().endswith(s) for s in SUFFIXES))
            if not found:
                raise UserError(f"data directory {entry} (data.path) holds no .jsonl, .jsonl.gz or .parquet file")
            files += found
        elif not entry.exists():
            raise UserError(f"data file not found: {entry} (data.path in params.yaml points there)")
        else:
            files.append(entry)
    root = Path(data_dir).resolve()
    for file in files:
        if root not in file.resolve().parents:
            raise UserError(f"data file {file} is outside data.dir={data_dir}, the directory dvc.yaml tracks: move "
                            "it there or set data.dir in params.yaml to a directory that holds every data file")
    if len(set(files)) != len(files):
        raise UserError(f"data.path names a file more than once: {', '.join(map(str, files))}")
    return files


def gzip_lines(path: Path, limit: int) -> Iterator[bytes]:
    """The lines of a gzipped JSONL file, as `lines.iter_lines` yields them (a BOM on line 1 dropped)."""
    def blocks() -> Iterator[bytes]:
        try:
            with gzip.open(path, "rb") as f:
                first = True
                while block := f.read(CHUNK):
                    if first:
                        block, first = block.removeprefix(BOM), False
                    yield block
        except (OSError, EOFError, zlib.error) as e:
            raise UserError(f"{path} is not a complete gzip file ({e}): re-create or re-download it") from None
    return iter_lines(blocks(), limit)


def parquet_rows(path: Path) -> Iterator[dict]:
    """The rows of a Parquet file as dicts, one record batch at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            yield from batch.to_pylist()
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path} is not a readable Parquet file ({e}): re-create or re-download it") from None
