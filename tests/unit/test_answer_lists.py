"""Benchmark files as shipped: `.json` arrays read element by element (rejects named by array index) and rows with
lists of answers expanded to every chosen x rejected pair, in one prompt group."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rewardkit.config import SplitConfig, ValidateConfig
from rewardkit.data.readers import JSON_ARRAY, JSONL, file_kind, json_array_rows
from rewardkit.data.splitting import SplitOutputs, split_file
from rewardkit.data.validation import ValidateOutputs, validate_files
from rewardkit.errors import UserError
from tests.conftest import read_jsonl

DATA = Path(__file__).resolve().parents[1] / "data"


def validate(tmp_path: Path, data: Path, **kw) -> tuple[dict, list[dict], list[dict]]:
    out = ValidateOutputs(tmp_path / "validated.jsonl", tmp_path / "rejects.jsonl", tmp_path / "validate.json")
    metrics = validate_files(data, out, ValidateConfig(max_reject_fraction=1.0), **kw)
    return metrics, read_jsonl(out.validated), read_jsonl(out.rejects)


def pair(k: int, **extra) -> dict:
    return {"prompt": f"Question {k}?", "chosen": f"Good answer {k}.", "rejected": f"Bad answer {k}.", **extra}


def test_a_json_array_is_read_as_rows_and_rejects_name_array_indexes(tmp_path):
    rows = [pair(0), "not an object", pair(2), {"prompt": "p"}, pair(0)]
    path = tmp_path / "set.json"
    path.write_text(json.dumps(rows, indent=2))
    assert file_kind(path) == JSON_ARRAY
    metrics, kept, rejects = validate(tmp_path, path)
    assert [r["prompt"] for r in kept] == ["Question 0?", "Question 2?"]
    assert [(r["index"], r["reason"]) for r in rejects] == [(1, "not_object"), (3, "missing_field"), (4, "duplicate")]
    assert "line" not in rejects[0] and rejects[2]["duplicate_of"] == 0 and "row index 0" in rejects[2]["detail"]
    assert (metrics["lines_read"], metrics["kept"]) == (5, 2)


@pytest.mark.parametrize("kind", ["json", "parquet"])
def test_max_line_bytes_applies_to_array_elements_and_parquet_rows(tmp_path, kind):
    rows = [pair(0), pair(1, chosen="x" * 600), pair(2)]  # row 1 is ~640 bytes as compact JSON
    path = tmp_path / f"set.{kind}"
    if kind == "json":
        path.write_text(json.dumps(rows))
    else:
        import pandas as pd
        pd.DataFrame(rows).to_parquet(path)
    out = ValidateOutputs(tmp_path / "validated.jsonl", tmp_path / "rejects.jsonl", tmp_path / "validate.json")
    validate_files(path, out, ValidateConfig(max_line_bytes=500, max_reject_fraction=1.0))
    rejects = read_jsonl(out.rejects)
    assert [r["reason"] for r in rejects] == ["line_too_long"] and "max_line_bytes = 500" in rejects[0]["detail"]
    assert [r["prompt"] for r in read_jsonl(out.validated)] == ["Question 0?", "Question 2?"]
    validate_files(path, out, ValidateConfig(max_line_bytes=1000, max_reject_fraction=1.0))
    assert len(read_jsonl(out.validated)) == 3


def test_a_json_file_of_lines_is_still_jsonl_and_a_gzipped_array_with_a_bom_is_an_array(tmp_path):
    lines = tmp_path / "lines.json"
    lines.write_text("\n".join(json.dumps(pair(k)) for k in range(3)) + "\n")
    assert file_kind(lines) == JSONL and len(validate(tmp_path, lines)[1]) == 3
    packed = tmp_path / "set.json.gz"
    packed.write_bytes(gzip.compress(b"\xef\xbb\xbf  " + json.dumps([pair(k) for k in range(3)]).encode()))
    assert [r["prompt"] for r in json_array_rows(packed)] == ["Question 0?", "Question 1?", "Question 2?"]


def test_a_broken_array_stops_with_where_after_streaming_the_rows_before(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps([pair(k) for k in range(3)])[:-30])  # the file ends inside the third row
    rows = json_array_rows(path)
    assert next(rows)["prompt"] == "Question 0?"  # streamed: the first row comes before the fault is read
    with pytest.raises(UserError, match=r"cut.json is not one well-formed JSON array: after element 2 \(0-based "
                                        r"index 1\)"):
        list(rows)


def test_rm_bench_rows_expand_to_nine_pairs_each_counted_in_the_metrics(tmp_path):
    metrics, kept, rejects = validate(tmp_path, DATA / "rmbench_sample.json")
    assert rejects == [] and (metrics["lines_read"], metrics["kept"], metrics["multi_answer_rows"],
                              metrics["pairs"]) == (8, 8, 8, 72)
    first = [r for r in kept if r["expanded_from"]["row"] == 0]
    source = json.loads((DATA / "rmbench_sample.json").read_text())[0]
    assert [(r["expanded_from"]["chosen"], r["expanded_from"]["rejected"]) for r in first] == [
        (i, j) for i in range(3) for j in range(3)]
    assert first[5]["chosen"] == source["chosen"][1] and first[5]["rejected"] == source["rejected"][2]
    assert first[5]["domain"] == "chat" and first[5]["id"] == "chat/0" and list(first[5])[:3] == [
        "prompt", "chosen", "rejected"]


def test_expanded_pairs_stay_in_one_prompt_group_of_the_split(tmp_path):
    validate(tmp_path, DATA / "rmbench_sample.json")
    out = SplitOutputs(tmp_path / "train.jsonl", tmp_path / "eval.jsonl", tmp_path / "split.json")
    split_file(tmp_path / "validated.jsonl", out, SplitConfig(eval_fraction=0.3, seed=3))
    train, held = {r["expanded_from"]["row"] for r in read_jsonl(out.train)}, {
        r["expanded_from"]["row"] for r in read_jsonl(out.eval)}
    assert train and held and not train & held
    assert sorted(len([r for r in read_jsonl(out.train) if r["expanded_from"]["row"] == k]) for k in train) == [
        9] * len(train)


def test_answer_lists_are_checked_pair_by_pair_and_compared_as_whole_rows(tmp_path):
    base = {"prompt": "Which is safer?", "chosen": ["Bonds.", "Government bonds."], "rejected": ["Lottery tickets."]}
    swapped = {**base, "chosen": base["rejected"], "rejected": base["chosen"]}
    bad = {**base, "prompt": "Other?", "rejected": ["Lottery tickets.", "bonds."]}
    single = {"prompt": "Which is safer?", "chosen": "Bonds.", "rejected": "Lottery tickets."}
    conversational = {"prompt": [{"role": "user", "content": "Hi?"}], "rejected": [
        {"role": "assistant", "content": "Go away."}], "chosen": [[{"role": "assistant", "content": "Hello!"}], [
            {"role": "assistant", "content": "Hi, how can I help?"}]]}
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [base, swapped, bad, single, dict(base)]) + "\n")
    metrics, kept, rejects = validate(tmp_path, path)
    assert [(r["line"], r["reason"]) for r in rejects] == [(1, "contradictory"), (2, "contradictory"), (
        3, "chosen_equals_rejected"), (5, "duplicate")]
    assert rejects[2]["detail"].startswith("chosen answer 0 vs rejected answer 1: chosen and rejected are identical")
    assert kept == [single] and metrics["kept"] == 1 and "pairs" not in metrics  # a file of pairs: no new keys
    conv = tmp_path / "conv.jsonl"
    conv.write_text(json.dumps(conversational) + "\n")
    metrics, kept, _ = validate(tmp_path, conv)
    assert metrics["pairs"] == 2 and kept[1]["chosen"] == [{"role": "assistant", "content": "Hi, how can I help?"}]
    assert kept[1]["prompt"] == conversational["prompt"] and kept[1]["expanded_from"]["chosen"] == 1


def test_tagged_rows_carry_their_source_row_and_plain_lines_stay_byte_exact(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps(pair(0)), json.dumps(pair(1, note="[sic]"))]
    path.write_text("\n".join(lines) + "\n")
    validate(tmp_path, path)
    assert (tmp_path / "validated.jsonl").read_text().splitlines() == lines  # "[" in a text is not a list
    _, kept, _ = validate(tmp_path, path, tag_rows=True)
    assert [r["expanded_from"] for r in kept] == [{"row": 0, "chosen": 0, "rejected": 0},
                                                  {"row": 1, "chosen": 0, "rejected": 0}]


def test_rewardbench2_as_parquet_list_columns_expands_like_its_jsonl(tmp_path):
    import pandas as pd

    rows = read_jsonl(DATA / "rewardbench2_sample.jsonl")
    pd.DataFrame(rows).to_parquet(tmp_path / "rb2.parquet")  # chosen / rejected become list<string> columns
    metrics, kept, rejects = validate(tmp_path, tmp_path / "rb2.parquet")
    assert rejects == [] and (metrics["kept"], metrics["multi_answer_rows"], metrics["pairs"]) == (11, 11, 42)
    assert {(r["expanded_from"]["row"], r["subset"]) for r in kept if r["id"] == "tied:1"} == {(7, "Ties")}
