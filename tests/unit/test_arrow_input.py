"""Hugging Face `datasets` data as validate's input (#29 item 2): a `save_to_disk` directory, a DatasetDict's, or
`.arrow` files, made here with `datasets` (no hub, no network). Rows get the formats and reject reasons of every
other input, named by their 0-based index (`ds[i]`); the validated bytes are those of the same table as Parquet;
shards are read one record batch at a time."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from rewardkit.data.arrow_files import arrow_rows
from rewardkit.data.readers import data_files
from rewardkit.errors import UserError
from tests.conftest import write_jsonl
from tests.unit.test_formats import CONV, HH, validate

datasets = pytest.importorskip("datasets")

EXPLICIT = [{"prompt": f"User: question {i}?\nAssistant:", "chosen": f" answer {i}.", "rejected": f" wrong {i}.",
             "margin": float(i % 3)} for i in range(12)]
BAD = {3: {"chosen": "  "}, 7: {"rejected": EXPLICIT[7]["chosen"]}, 9: dict(EXPLICIT[2])}  # empty, equal, duplicate
ROWS = [{**row, **BAD.get(i, {})} for i, row in enumerate(EXPLICIT)]


def save(path: Path, rows: list[dict], **kwargs) -> Path:
    datasets.Dataset.from_list(rows).save_to_disk(str(path), **kwargs)
    return path


def test_a_saved_dataset_is_read_as_its_parquet_twin_with_rows_named_by_index(tmp_path):
    ds = save(tmp_path / "data/prefs", ROWS, num_shards=3)  # three .arrow shards, read in state.json's order
    pd.DataFrame(ROWS).to_parquet(tmp_path / "data/prefs.parquet")
    metrics, kept, rejects = validate(tmp_path / "a", ds)
    twin_metrics, twin_kept, twin_rejects = validate(tmp_path / "b", tmp_path / "data/prefs.parquet")
    validated = (tmp_path / "a/out/validated.jsonl").read_bytes()
    assert validated == (tmp_path / "b/out/validated.jsonl").read_bytes()  # byte for byte, as Parquet's
    assert metrics["files"][0]["kind"] == "datasets" and metrics["format"] == "explicit" and metrics["kept"] == 9
    assert [(r["file"], r["index"], r["reason"]) for r in rejects] == [
        (str(ds), 3, "empty_text"), (str(ds), 7, "chosen_equals_rejected"), (str(ds), 9, "duplicate")]
    assert rejects[2]["duplicate_of"] == 2 and "row index 2" in rejects[2]["detail"]
    assert [(r["reason"], r["detail"]) for r in rejects] == [(r["reason"], r["detail"].replace("line 3", "row index 2"))
                                                            for r in twin_rejects]
    assert [r["line"] for r in twin_rejects] == [4, 8, 10]  # Parquet rows count from 1, datasets rows from 0
    assert datasets.load_from_disk(str(ds))[rejects[0]["index"]]["chosen"] == "  "  # the index is ds[i]
    validate(tmp_path / "a", ds)
    assert (tmp_path / "a/out/validated.jsonl").read_bytes() == validated  # deterministic


def test_conversational_and_hh_datasets_keep_their_format(tmp_path):
    conv = save(tmp_path / "data/conv", [CONV, {**CONV, "chosen": [{"role": "robot", "content": "Beep."}]}])
    hh = save(tmp_path / "data/hh", [HH, {**HH, "chosen": "Yes.", "rejected": "No."}])
    metrics, kept, rejects = validate(tmp_path, [conv, hh])
    assert [(f["kind"], f["format"], f["kept"]) for f in metrics["files"]] == [
        ("datasets", "conversational", 1), ("datasets", "implicit", 1)]
    assert kept[0]["chosen"] == CONV["chosen"] and kept[0]["source"] == "chat-set"  # messages stay messages
    assert kept[1]["prompt"] == "\n\nHuman: What is APR?\n\nAssistant:" and kept[1]["source"] == "hh"
    assert [(r["index"], r["reason"]) for r in rejects] == [(1, "bad_messages"), (1, "no_shared_prompt")]


def test_a_dataset_dict_is_one_input_a_split_and_a_directory_lists_datasets_whole(tmp_path):
    splits = datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS[:6]),
                                   "test": datasets.Dataset.from_list(ROWS[6:])})
    splits.save_to_disk(str(tmp_path / "data/hub/hh"))
    save(tmp_path / "data/more", EXPLICIT[:2], num_shards=2)
    write_jsonl(tmp_path / "data/extra.jsonl", EXPLICIT[:1])
    found = data_files(str(tmp_path / "data"), str(tmp_path / "data"))
    assert found == [tmp_path / "data/extra.jsonl", tmp_path / "data/hub/hh/train", tmp_path / "data/hub/hh/test",
                     tmp_path / "data/more"]  # path order; dataset_dict.json's split order; no shard on its own
    assert data_files(str(tmp_path / "data/hub/hh"), str(tmp_path / "data"))[0].name == "train"
    metrics, kept, rejects = validate(tmp_path, found[1:3])
    assert [f["lines_read"] for f in metrics["files"]] == [6, 6]
    assert {r["source"] for r in kept} == {"train", "test"}
    assert [(Path(r["file"]).name, r["index"], r["reason"]) for r in rejects] == [
        ("train", 3, "empty_text"), ("test", 1, "chosen_equals_rejected"), ("test", 3, "duplicate")]
    assert rejects[2]["other_file"].endswith("train") and rejects[2]["duplicate_of"] == 2


def test_lone_arrow_files_in_stream_and_file_format(tmp_path):
    ds = save(tmp_path / "data/prefs", EXPLICIT)
    stream = next(ds.glob("*.arrow"))  # what datasets writes: the IPC stream format
    file_format = tmp_path / "data/prefs-v2.arrow"
    feather.write_feather(pa.Table.from_pylist(EXPLICIT), file_format, chunksize=5)  # IPC file format, 3 batches
    assert list(arrow_rows(stream)) == list(arrow_rows(file_format)) == EXPLICIT
    metrics, kept, _ = validate(tmp_path, [stream, file_format])
    assert [f["kind"] for f in metrics["files"]] == ["arrow", "arrow"] and metrics["kept"] == 12
    assert metrics["rejected_by_reason"]["duplicate"] == 12  # the second file repeats the first


def test_shards_are_read_one_record_batch_at_a_time(tmp_path):
    """A 24 MB shard of 24 record batches: pyarrow holds about one batch at a time while the rows stream out
    (reading the table whole would hold all 24 MB)."""
    text = "x" * 500
    rows = [{"prompt": f"p{i}", "chosen": text + str(i), "rejected": text} for i in range(24_000)]
    ds = save(tmp_path / "data/big", rows, max_shard_size="100MB")
    shard = next(ds.glob("*.arrow"))
    batches = sum(1 for _ in pa.ipc.open_stream(pa.OSFile(str(shard))))
    size = shard.stat().st_size
    assert size > 24e6 and batches >= 20, (size, batches)  # datasets writes batches of 1000 rows
    del rows
    base, peak, count = pa.total_allocated_bytes(), 0, 0
    for count, row in enumerate(arrow_rows(ds), start=1):
        if count % 500 == 0:
            peak = max(peak, pa.total_allocated_bytes() - base)
    assert count == 24_000 and row["chosen"] == text + "23999"
    assert 0 < peak < 4 * size / batches, (peak, size / batches)


def test_damaged_datasets_inputs_are_one_clear_error(tmp_path):
    ds = save(tmp_path / "data/prefs", EXPLICIT, num_shards=2)
    shard = sorted(ds.glob("*.arrow"))[1]
    shard.write_bytes(b"not arrow at all")
    with pytest.raises(UserError, match=f"{shard} is not a readable Arrow file"):
        validate(tmp_path, ds)
    shard.unlink()
    with pytest.raises(UserError, match=f"state.json lists {shard.name}, which is not there"):
        validate(tmp_path, ds)
    (tmp_path / "data/dict").mkdir()
    (tmp_path / "data/dict/dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    with pytest.raises(UserError, match="lists split\\(s\\) train in dataset_dict.json without their state.json"):
        data_files(str(tmp_path / "data/dict"), str(tmp_path / "data"))
