"""Input files in bounded memory: `.jsonl` (scanned in parallel byte ranges by `rewardkit.data.lines`), `.jsonl.gz`
(streamed through gzip), `.parquet` (read with pyarrow in record batches) and `.json` / `.json.gz` holding one
array of rows, as RM-Bench ships its files (streamed element by element with ijson, so a multi-GB array is never
loaded whole). A `.json` file whose first character is not "[" is read as JSONL, as before. Hugging Face `datasets`
directories (`save_to_disk`) and `.arrow` files are read in record batches by `rewardkit.data.arrow_files`."""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import Iterator

from rewardkit.data.arrow_files import is_saved_dataset, saved_splits
from rewardkit.data.lines import BOM, CHUNK, iter_lines
from rewardkit.errors import UserError

JSONL, JSONL_GZ, PARQUET, JSON_ARRAY, JSON_ARRAY_GZ = "jsonl", "jsonl.gz", "parquet", "json", "json.gz"
ARROW, SAVED_DATASET = "arrow", "datasets"  # one .arrow file; a `datasets` save_to_disk directory
SUFFIXES = {".jsonl": JSONL, ".json": JSONL, ".jsonl.gz": JSONL_GZ, ".json.gz": JSONL_GZ, ".parquet": PARQUET,
            ".arrow": ARROW}
SUPPORTED = ".jsonl, .jsonl.gz, .json (one array of rows), .parquet, .arrow or a datasets save_to_disk directory"
PARQUET_BATCH_ROWS = 4096


def file_kind(path: Path) -> str:
    """The reader a file needs, from its name (and, for `.json` / `.json.gz`, its first non-blank character); a
    `datasets` save_to_disk directory is read as one input."""
    if is_saved_dataset(path):
        return SAVED_DATASET
    name = path.name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            kind = SUFFIXES[suffix]
            if suffix in (".json", ".json.gz") and _starts_an_array(path, gz=suffix == ".json.gz"):
                return JSON_ARRAY_GZ if suffix == ".json.gz" else JSON_ARRAY
            return kind
    raise UserError(f"{path}: unsupported file type; data files must be {SUPPORTED}")


def _starts_an_array(path: Path, gz: bool) -> bool:
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4096).removeprefix(BOM)
    except (OSError, EOFError, zlib.error):
        return False  # the reader says what is wrong with the file
    return head.lstrip()[:1] == b"["


def json_array_rows(path: Path) -> Iterator[object]:
    """The elements of a file holding one JSON array, streamed (ijson over its C backend when built); numbers
    that are not integers come as floats. A file that is not one well-formed array stops with a UserError saying
    where: unlike a JSONL line, a broken array cannot be resynchronised, so no row after the fault is read."""
    import ijson

    gz = path.name.lower().endswith(".gz")
    count = 0
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            if f.read(3) != BOM:
                f.seek(0)
            for count, row in enumerate(ijson.items(f, "item", use_float=True), start=1):
                yield row
    except ijson.JSONError as e:
        raise UserError(f"{path} is not one well-formed JSON array: after element {count} (0-based index "
                        f"{count - 1}): {e}; fix the file or write it as JSONL (one row a line)") from None
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"{path} is not a complete gzip file ({e}): re-create or re-download it") from None


def data_files(path: str | list[str], data_dir: str) -> list[Path]:
    """The inputs `data.path` names: one file, a list of files, or a directory (its supported files in name order,
    a `datasets` save_to_disk directory in it as one input). A save_to_disk directory is one input; a DatasetDict's,
    one input a split. Every input must lie under `data.dir`, the directory dvc.yaml tracks, or DVC would not
    notice a change."""
    entries = [path] if isinstance(path, str) else list(path)
    files: list[Path] = []
    for entry in map(Path, entries):
        if entry.is_dir():
            found = directory_inputs(entry)
            if not found:
                raise UserError(f"data directory {entry} (data.path) holds no data: none of {SUPPORTED}")
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


def directory_inputs(directory: Path) -> list[Path]:
    """The inputs under `directory` in path order: `datasets` save_to_disk directories whole (a DatasetDict's as
    its splits, in its order), every other supported file by itself."""
    if is_saved_dataset(directory):
        return [directory]
    if (splits := saved_splits(directory)) is not None:
        return splits
    found: list[Path] = []
    for child in sorted(directory.iterdir()):
        if child.is_dir():
            found += directory_inputs(child)
        elif child.is_file() and any(child.name.lower().endswith(s) for s in SUFFIXES):
            found.append(child)
    return found


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
