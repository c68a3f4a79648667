"""The formats people have: explicit, implicit (HH), conversational and implicit conversational rows, in .jsonl,
.jsonl.gz and .parquet files, one file or several; each malformed row rejected with its own reason."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from rewardkit.config import DataConfig, ValidateConfig
from rewardkit.data.formats import render, render_plain_prompt
from rewardkit.data.readers import data_files
from rewardkit.data.validation import ValidateOutputs, validate_files
from rewardkit.errors import UserError
from tests.conftest import read_jsonl, write_jsonl

HH = {"chosen": "\n\nHuman: What is APR?\n\nAssistant: The yearly cost of a loan, fees included.",
      "rejected": "\n\nHuman: What is APR?\n\nAssistant: A kind of bank account.", "id": "hh-1"}
HH_TWO_TURNS = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Is cash king?\n\nAssistant: Often.",
                "rejected": "\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Is cash king?\n\nAssistant: Never."}
USER, ASSISTANT = "user", "assistant"


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


CONV = {"prompt": [msg(USER, "What is APR?")], "chosen": [msg(ASSISTANT, "The yearly cost of a loan.")],
        "rejected": [msg(ASSISTANT, "A kind of bank account.")], "source": "chat-set"}
IMPLICIT_CONV = {"chosen": [msg("system", "Be brief."), msg(USER, "What is APR?"), msg(ASSISTANT, "Yearly cost.")],
                 "rejected": [msg("system", "Be brief."), msg(USER, "What is APR?"), msg(ASSISTANT, "A bank.")]}


def validate(tmp_path: Path, paths, **cfg) -> tuple[dict, list[dict], list[dict]]:
    out = ValidateOutputs(tmp_path / "out/validated.jsonl", tmp_path / "out/rejects.jsonl",
                          tmp_path / "out/validate.json")
    metrics = validate_files(paths, out, ValidateConfig(**{"max_reject_fraction": 1.0, **cfg}))
    return metrics, read_jsonl(out.validated), read_jsonl(out.rejects)


def test_implicit_rows_get_the_shared_prefix_as_prompt(tmp_path):
    data = write_jsonl(tmp_path / "hh.jsonl", [HH, HH_TWO_TURNS, {"chosen": "Yes.", "rejected": "No."},
                                              {"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": 5},
                                              {"prompt": "p", "chosen": "a", "rejected": "b"}])
    metrics, kept, rejects = validate(tmp_path, data)
    assert metrics["format"] == "implicit" and metrics["kept"] == 2
    assert kept[0] == {"prompt": "\n\nHuman: What is APR?\n\nAssistant:", "chosen": " The yearly cost of a loan, "
                       "fees included.", "rejected": " A kind of bank account.", "id": "hh-1"}
    assert kept[1]["prompt"].endswith("Is cash king?\n\nAssistant:") and kept[1]["chosen"] == " Often."
    assert [(r["line"], r["reason"]) for r in rejects] == [(3, "no_shared_prompt"), (4, "not_a_string"),
                                                          (5, "format_mismatch")]
    assert "assistant turn" in rejects[0]["detail"] and "explicit" in rejects[2]["detail"]


def test_conversational_rows_keep_their_messages(tmp_path):
    bad_role = {**CONV, "chosen": [msg("robot", "Beep.")]}
    empty = {**CONV, "rejected": [msg(ASSISTANT, "  ")]}
    not_list = {**CONV, "chosen": "The yearly cost."}
    data = write_jsonl(tmp_path / "chat.jsonl", [CONV, bad_role, empty, not_list])
    metrics, kept, rejects = validate(tmp_path, data)
    assert metrics["format"] == "conversational"
    assert kept == [CONV]  # messages stay messages until the base's tokenizer renders them
    assert [r["reason"] for r in rejects] == ["bad_messages", "empty_text", "bad_messages"]
    assert "robot" in rejects[0]["detail"] and "rejected message 1" in rejects[1]["detail"]


def test_implicit_conversational_rows_split_before_the_first_differing_assistant_turn(tmp_path):
    no_shared = {"chosen": [msg(USER, "a"), msg(ASSISTANT, "b")], "rejected": [msg(USER, "c"), msg(ASSISTANT, "d")]}
    data = write_jsonl(tmp_path / "chat.jsonl", [IMPLICIT_CONV, no_shared])
    metrics, kept, rejects = validate(tmp_path, data)
    assert metrics["format"] == "implicit_conversational"
    assert kept == [{"prompt": IMPLICIT_CONV["chosen"][:2], "chosen": [msg(ASSISTANT, "Yearly cost.")],
                     "rejected": [msg(ASSISTANT, "A bank.")]}]
    assert [r["reason"] for r in rejects] == ["no_shared_prompt"]


def test_duplicates_are_found_across_formats_by_their_plain_rendering(tmp_path):
    """A conversational row and its explicit twin render to the same text: the second is a near duplicate."""
    explicit = {"prompt": render_plain_prompt(CONV["prompt"]), "chosen": " The yearly cost of a loan.",
                "rejected": " A kind of bank account."}
    one, two = write_jsonl(tmp_path / "data/a.jsonl", [CONV]), write_jsonl(tmp_path / "data/b.jsonl", [explicit])
    metrics, kept, rejects = validate(tmp_path, [one, two])
    assert metrics["format"] == "mixed" and [f["format"] for f in metrics["files"]] == ["conversational", "explicit"]
    assert len(kept) == 1 and rejects[0]["reason"] == "duplicate" and rejects[0]["file"] == str(two)
    assert rejects[0]["other_file"] == str(one) and rejects[0]["duplicate_of"] == 1


def test_gzip_and_parquet_and_a_list_of_files(tmp_path):
    rows = [{"prompt": f"User: q{i}\nAssistant:", "chosen": f" a{i}", "rejected": f" b{i}"} for i in range(6)]
    plain = write_jsonl(tmp_path / "data/plain.jsonl", rows[:2])
    zipped = tmp_path / "data/zipped.jsonl.gz"
    zipped.write_bytes(gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in rows[2:4] + ["[1]"])))
    table = tmp_path / "data/table.parquet"
    pd.DataFrame(rows[4:] + [{**rows[0], "margin": None, "prompt": "User: other\nAssistant:"}]).to_parquet(table)
    metrics, kept, rejects = validate(tmp_path, data_files(str(tmp_path / "data"), str(tmp_path)))  # a directory
    assert [Path(f["path"]).name for f in metrics["files"]] == ["plain.jsonl", "table.parquet", "zipped.jsonl.gz"]
    assert [f["kind"] for f in metrics["files"]] == ["jsonl", "parquet", "jsonl.gz"]
    assert [r["prompt"] for r in kept] == [r["prompt"] for r in rows[:2] + rows[4:]] + ["User: other\nAssistant:"] + \
        [r["prompt"] for r in rows[2:4]]
    assert {r["source"] for r in kept} == {"plain.jsonl", "table.parquet", "zipped.jsonl.gz"}  # several files
    assert kept[4]["margin"] is None  # a Parquet null is an absent margin, not a bad one
    assert [(Path(r["file"]).name, r["line"], r["reason"]) for r in rejects] == [("zipped.jsonl.gz", 3, "not_object")]
    listed = data_files([str(plain), str(table)], str(tmp_path))
    assert validate(tmp_path / "again", listed)[0]["kept"] == 5


def test_a_damaged_gzip_or_parquet_file_is_one_clear_error(tmp_path):
    bad_gz, bad_parquet = tmp_path / "x.jsonl.gz", tmp_path / "y.parquet"
    bad_gz.write_bytes(gzip.compress(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n' * 100)[:40])
    bad_parquet.write_bytes(b"PAR1 not really")
    for path, words in ((bad_gz, "not a complete gzip file"), (bad_parquet, "not a readable Parquet file")):
        with pytest.raises(UserError, match=words):
            validate(tmp_path, path)


def test_data_paths_must_lie_under_the_tracked_directory(tmp_path):
    inside = write_jsonl(tmp_path / "data/a.jsonl", [CONV])
    outside = write_jsonl(tmp_path / "elsewhere/b.jsonl", [CONV])
    assert data_files(str(inside), str(tmp_path / "data")) == [inside]
    with pytest.raises(UserError, match="outside data.dir"):
        data_files([str(inside), str(outside)], str(tmp_path / "data"))
    with pytest.raises(UserError, match="unsupported file type"):
        validate(tmp_path, write_jsonl(tmp_path / "data/c.csv", ["a,b"]))
    with pytest.raises(UserError, match="data.path"):
        DataConfig(path=[])


def test_rendering_with_a_chat_template_and_without():
    class ChatML:  # what apply_chat_template does for a ChatML template
        @staticmethod
        def apply_chat_template(messages, tokenize=False, add_generation_prompt=False):
            text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
            return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    prompt, chosen = CONV["prompt"], CONV["chosen"]
    assert render(prompt, chosen) == ("User: What is APR?\nAssistant:", " The yearly cost of a loan.")
    assert render(prompt, chosen, ChatML) == ("<|im_start|>user\nWhat is APR?<|im_end|>\n<|im_start|>assistant\n",
                                              "The yearly cost of a loan.<|im_end|>\n")
    assert render("User: hi\nAssistant:", " Hello.", ChatML) == ("User: hi\nAssistant:", " Hello.")
