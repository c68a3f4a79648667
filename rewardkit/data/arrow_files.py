"""Hugging Face `datasets` data as validate's input, read with pyarrow one record batch at a time (memory flat).

- A `Dataset.save_to_disk` directory (`state.json`, `dataset_info.json`, `data-0000k-of-0000n.arrow`) is one input:
  its shards in the order `state.json` lists them, rows numbered by their index in the dataset (`ds[i]`).
- A `DatasetDict.save_to_disk` directory (`dataset_dict.json` and one such directory a split) is one input a split,
  in the order `dataset_dict.json` lists them.
- A lone `.arrow` file (what `datasets` caches, or any Arrow IPC file) is one input, in the IPC stream format that
  `datasets` writes or the IPC file format (Feather v2) that `pyarrow.feather` writes.
Shards are opened as plain files, not memory-mapped: a batch is read, converted and dropped before the next.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from rewardkit.errors import UserError

STATE, DATASET_DICT = "state.json", "dataset_dict.json"
ARROW_FILE_MAGIC = b"ARROW1"  # the IPC file format starts with it; the stream format does not
ARROW_BATCH_ROWS = 4096  # rows converted to Python at a time: a long record batch is sliced


def is_saved_dataset(path: Path) -> bool:
    """Whether `path` is a directory written by `Dataset.save_to_disk`."""
    return (path / STATE).is_file()


def saved_splits(path: Path) -> list[Path] | None:
    """The split directories of a `DatasetDict.save_to_disk` directory, in its order; None for any other path."""
    if not (path / DATASET_DICT).is_file():
        return None
    try:
        splits = json.loads((path / DATASET_DICT).read_text(encoding="utf-8"))["splits"]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path / DATASET_DICT} is not a datasets split list ({e}): re-save it with "
                        "DatasetDict.save_to_disk") from None
    missing = [s for s in splits if not is_saved_dataset(path / s)]
    if missing:
        raise UserError(f"{path} lists split(s) {', '.join(missing)} in {DATASET_DICT} without their {STATE}: "
                        "re-save it with DatasetDict.save_to_disk")
    return [path / split for split in splits]


def dataset_shards(directory: Path) -> list[Path]:
    """The .arrow shards of a `save_to_disk` directory, in the order its state.json gives them."""
    state = directory / STATE
    try:
        names = [entry["filename"] for entry in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{state} is not a datasets state file ({e}): re-save the dataset with save_to_disk") from None
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise UserError(f"{directory}: {STATE} lists {', '.join(missing)}, which is not there: re-save the dataset "
                        "with save_to_disk")
    return [directory / name for name in names]


def arrow_batches(path: Path) -> Iterator:
    """The record batches of one Arrow IPC file, stream or file format, read one at a time."""
    import pyarrow as pa

    with pa.OSFile(str(path)) as source:
        is_file_format = source.read(len(ARROW_FILE_MAGIC)) == ARROW_FILE_MAGIC
        source.seek(0)
        if is_file_format:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
        else:
            yield from pa.ipc.open_stream(source)


def arrow_rows(path: Path) -> Iterator[dict]:
    """The rows of a `save_to_disk` directory (all its shards) or of one .arrow file, as dicts in order."""
    import pyarrow as pa

    shards = dataset_shards(path) if path.is_dir() else [path]
    for shard in shards:
        try:
            for batch in arrow_batches(shard):
                for start in range(0, batch.num_rows, ARROW_BATCH_ROWS):
                    yield from batch.slice(start, ARROW_BATCH_ROWS).to_pylist()
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"{shard} is not a readable Arrow file ({e}): re-create or re-download it") from None
