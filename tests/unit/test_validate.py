"""The validate stage's library code: every reject reason with its line and detail, byte-exact kept lines, counts,
inputs that stop the stage. One mixed file holds a line for every reason and is validated once."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from rewardkit.config import ValidateConfig
from rewardkit.data import lines as line_io
from rewardkit.data.checks import REASONS
from rewardkit.data.input_files import InputFile
from rewardkit.data.validation import ValidateOutputs, validate_files
from rewardkit.errors import UserError

GOOD = {"prompt": "What is EBITDA?", "chosen": "Earnings before interest, taxes, depreciation and amortisation.",
        "rejected": "A kind of bank.", "id": "a1", "source": "hand", "margin": 0.5}


def row(prompt: str = "Define liquidity.", chosen: str = "How easily an asset becomes cash.",
        rejected: str = "A drink.", **extra: object) -> dict:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, **extra}


# (id, raw line, expected reason or None for kept, words the detail must contain). Line numbers follow the order.
CASES = [
    ("good", json.dumps(GOOD), None, []),
    ("good-unicode-spacing", '{ "prompt" :"Résumé 日本語 مرحبا e\u0301 ?",   "chosen":"😀 ok\\n" ,"rejected" : "no",'
                             '  "extra": {"nested": [1, 2.50]} }', None, []),
    ("good-padded", '  {"prompt": "Padded line", "chosen": "a", "rejected": "b"}\t ', None, []),
    ("blank_line", "   \t", "blank_line", ["empty or only whitespace"]),
    ("line_too_long", json.dumps(row(chosen="x" * 500)), "line_too_long", ["max_line_bytes", "400"]),
    ("invalid_utf8", b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}', "invalid_utf8", ["UTF-8", "byte 16"]),
    ("not_json", '{"prompt": "x", "chosen": "y"', "not_json", ["column 30", "char 29"]),
    ("not_json-long-cjk", '{"prompt": "' + "日本語" * 40, "not_json", ["Unterminated string", "column 12"]),
    ("not_json-nan", '{"prompt": "p", "chosen": "c", "rejected": "r", "margin": NaN}', "not_json", ["NaN"]),
    ("not_json-infinity", '{"prompt": "p", "chosen": "c", "rejected": "r", "margin": -Infinity}', "not_json",
     ["-Infinity"]),
    ("not_object-list", "[1, 2]", "not_object", ["list"]),
    ("not_object-number", "42", "not_object", ["number"]),
    ("not_object-null", "null", "not_object", ["null"]),
    ("not_object-string", '"a string"', "not_object", ["string"]),
    ("missing_field", json.dumps({"prompt": "p", "id": 3}), "missing_field", ["chosen", "rejected"]),
    ("not_a_string-number", json.dumps(row(chosen=5)), "not_a_string", ["'chosen'", "number"]),
    ("not_a_string-list", json.dumps(row(rejected=[1, 2])), "not_a_string", ["'rejected'", "list"]),
    ("not_a_string-object", json.dumps(row(prompt={"a": 1})), "not_a_string", ["'prompt'", "object"]),
    ("not_a_string-null", json.dumps(row(chosen=None)), "not_a_string", ["'chosen'", "null"]),
    ("not_a_string-bool", json.dumps(row(rejected=True)), "not_a_string", ["'rejected'", "bool"]),
    ("empty_text", json.dumps(row(prompt=" \t\n ")), "empty_text", ["prompt"]),
    ("empty_text-two", json.dumps(row(chosen="", rejected="  ")), "empty_text", ["chosen, rejected"]),
    ("nul_byte", json.dumps(row(chosen="a\x00b")), "nul_byte", ["'chosen'", "NUL"]),
    ("lone_surrogate", '{"prompt": "p \\ud83d", "chosen": "c", "rejected": "r"}', "lone_surrogate", ["'prompt'"]),
    ("bad_margin-string", json.dumps(row(margin="0.5")), "bad_margin", ["margin", "string"]),
    ("bad_margin-overflow", '{"prompt": "p", "chosen": "c", "rejected": "r", "margin": 1e400}', "bad_margin",
     ["margin", "inf"]),
    ("bad_margin-bool", json.dumps(row(margin=True)), "bad_margin", ["margin", "bool"]),
    ("chosen_equals_rejected", json.dumps(row(chosen="same", rejected="same")), "chosen_equals_rejected",
     ["identical"]),
    ("chosen_equals_rejected-normalised", json.dumps(row(chosen="Same  text", rejected="same text")),
     "chosen_equals_rejected", ["identical after collapsing whitespace"]),
    ("duplicate", json.dumps({**GOOD, "id": "another id"}), "duplicate", ["line 1"]),
    ("near_duplicate", json.dumps({**GOOD, "prompt": "  what IS\tEBITDA? "}), "near_duplicate", ["line 1"]),
    ("contradictory-first", json.dumps(row("Is cash king?", "Often, for liquidity.", "Never.")), "contradictory",
     ["opposite"]),
    ("kept-between", json.dumps(row("Another prompt", "Good answer", "Bad answer")), None, []),
    ("contradictory-second", json.dumps(row("is  CASH king? ", "Never.", "Often, for liquidity.")),
     "contradictory", ["opposite"]),
    ("duplicate-of-contradictory", json.dumps(row("Is cash king?", "Often, for liquidity.", "Never.")),
     "duplicate", []),
    ("truncated-last-line-kept", json.dumps(row("Last prompt", "good", "bad")), None, []),
]
LINE = {case[0]: n for n, case in enumerate(CASES, start=1)}


def raw(line: str | bytes) -> bytes:
    return line if isinstance(line, bytes) else line.encode("utf-8")


def run_validate(workdir: Path, data: Path, **cfg: object):
    """Validate `data` into workdir/data and workdir/metrics; returns (rejects, metrics, validated bytes) as
    they are on disk afterwards, or the UserError it raised as the first item's place: (error, ...)."""
    out = ValidateOutputs(workdir / "data/validated.jsonl", workdir / "data/rejects.jsonl",
                          workdir / "metrics/validate.json")
    error = None
    try:
        validate_files(data, out, ValidateConfig(**cfg))
    except UserError as e:
        error = str(e)
    rejects = [json.loads(line) for line in out.rejects.read_text(encoding="utf-8").splitlines()] \
        if out.rejects.exists() else None
    metrics = json.loads(out.metrics.read_text()) if out.metrics.exists() else None
    return error, rejects, metrics, out.validated.read_bytes() if out.validated.exists() else None


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The mixed file validated once; its last line has no newline."""
    workdir = tmp_path_factory.mktemp("mixed")
    (workdir / "pairs.jsonl").write_bytes(b"\n".join(raw(case[1]) for case in CASES))
    error, rejects, metrics, validated = run_validate(workdir, workdir / "pairs.jsonl", max_line_bytes=400,
                                                      max_reject_fraction=1.0)
    assert error is None, error
    return {"rejects": {r["line"]: r for r in rejects}, "metrics": metrics, "validated": validated}


@pytest.mark.parametrize("name,line,reason,words", [c for c in CASES if c[2]], ids=[c[0] for c in CASES if c[2]])
def test_each_reason_names_line_and_detail(mixed: dict, name: str, line: str | bytes, reason: str,
                                           words: list[str]) -> None:
    record = mixed["rejects"][LINE[name]]
    assert record["reason"] == reason
    for word in words:
        assert word in record["detail"]
    assert record["excerpt"] == raw(line).decode("utf-8", errors="replace")[:120]


FORMAT_REASONS = {"format_mismatch", "bad_messages", "no_shared_prompt"}  # exercised in test_formats.py


def test_every_reason_code_is_exercised(mixed: dict) -> None:
    assert {r["reason"] for r in mixed["rejects"].values()} == set(REASONS) - FORMAT_REASONS


def test_kept_lines_are_byte_exact_with_extra_fields(mixed: dict) -> None:
    kept = [raw(case[1]) + b"\n" for case in CASES if case[2] is None]
    assert mixed["validated"] == b"".join(kept)  # the truncated last line got its "\n"
    assert json.loads(mixed["validated"].splitlines()[0]) == GOOD  # id, source, margin pass through


def test_counts_add_up(mixed: dict) -> None:
    m = mixed["metrics"]
    assert m["lines_read"] == len(CASES)
    assert m["kept"] == sum(case[2] is None for case in CASES) == len(mixed["validated"].splitlines())
    assert m["kept"] + m["rejected"] == m["lines_read"]
    assert set(m["rejected_by_reason"]) == set(REASONS)
    assert sum(m["rejected_by_reason"].values()) == m["rejected"] == len(mixed["rejects"])
    assert m["rejected_by_reason"]["not_a_string"] == 5
    assert m["reject_fraction"] == round(m["rejected"] / m["lines_read"], 6)


def test_duplicates_name_the_first_line(mixed: dict) -> None:
    rejects = mixed["rejects"]
    assert rejects[LINE["duplicate"]]["duplicate_of"] == LINE["good"]
    assert rejects[LINE["near_duplicate"]]["duplicate_of"] == LINE["good"]
    assert rejects[LINE["duplicate-of-contradictory"]]["duplicate_of"] == LINE["contradictory-first"]


def test_both_lines_of_a_contradiction_go_and_name_each_other(mixed: dict) -> None:
    first, second = LINE["contradictory-first"], LINE["contradictory-second"]
    assert mixed["rejects"][first]["contradicts"] == second
    assert mixed["rejects"][second]["contradicts"] == first
    assert f"line {second}" in mixed["rejects"][first]["detail"]
    assert LINE["kept-between"] not in mixed["rejects"]


def test_bom_crlf_and_lone_cr_are_tolerated(tmp_path: Path) -> None:
    lines = [json.dumps(row(f"prompt {i}")) for i in range(3)]
    data = tmp_path / "pairs.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + f"{lines[0]}\r\n{lines[1]}\r{lines[2]}\r\n".encode())
    error, rejects, metrics, validated = run_validate(tmp_path, data)
    assert error is None, error
    assert validated == "".join(line + "\n" for line in lines).encode()
    assert rejects == [] and metrics["lines_read"] == 3


def test_truncated_invalid_last_line_is_not_json(tmp_path: Path) -> None:
    good = [json.dumps(row(f"prompt {i}")) for i in range(30)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(good) + '\n{"prompt": "cut off mid-wr', encoding="utf-8")
    error, rejects, metrics, validated = run_validate(tmp_path, data)
    assert error is None, error
    assert [(r["line"], r["reason"]) for r in rejects] == [(31, "not_json")]
    assert "Unterminated string" in rejects[0]["detail"] and validated.count(b"\n") == 30


def assert_error(error: str | None, *words: str) -> None:
    assert error is not None and "\n" not in error, error
    for word in words:
        assert word in error, (word, error)


def test_missing_file(tmp_path: Path) -> None:
    error, *_ = run_validate(tmp_path, tmp_path / "nowhere/pairs.jsonl")
    assert_error(error, "not found", "nowhere/pairs.jsonl", "data.path", "params.yaml")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    error, *_ = run_validate(tmp_path, tmp_path / "adir")
    assert_error(error, "is a directory", "adir")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "pairs.jsonl").write_bytes(b"")
    error, *_ = run_validate(tmp_path, tmp_path / "pairs.jsonl")
    assert_error(error, "empty", "0 bytes", "pairs.jsonl")


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(row()) + "\n")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reading")
        error, *_ = run_validate(tmp_path, path)
        assert_error(error, "cannot read", "pairs.jsonl", "ermission denied")
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("encoding,text", [
    ("utf-16", "ascii"), ("utf-16-le", "ascii"), ("utf-16-be", "ascii"), ("utf-16-le", "cjk")])
def test_utf16_is_fatal(tmp_path: Path, encoding: str, text: str) -> None:
    """"utf-16" writes a BOM, -le/-be do not; mostly-CJK text has few NUL bytes but starts with '{' and a NUL."""
    words = "利润率和现金流" * 20 if text == "cjk" else "prompt"
    text = "".join(json.dumps(row(f"{words} {i}"), ensure_ascii=False) + "\n" for i in range(5))
    (tmp_path / "pairs.jsonl").write_bytes(text.encode(encoding))
    error, *_ = run_validate(tmp_path, tmp_path / "pairs.jsonl")
    assert_error(error, "looks like UTF-16", "re-save it as UTF-8")


def test_all_lines_rejected(tmp_path: Path) -> None:
    (tmp_path / "pairs.jsonl").write_text("[1]\n[2]\nnot json\n\n", encoding="utf-8")
    error, rejects, metrics, validated = run_validate(tmp_path, tmp_path / "pairs.jsonl")
    assert_error(error, "no valid pairs in", "all 4 lines rejected", "data/rejects.jsonl",
                 "not_object 2", "not_json 1", "blank_line 1")
    assert len(rejects) == 4 and metrics["kept"] == 0 and validated is None


def test_reject_fraction_above_threshold(tmp_path: Path) -> None:
    data = write_lines(tmp_path / "pairs.jsonl", [row(f"prompt {i}") for i in range(8)] + [[1], "{bad", "{bad",
                                                                                          row("prompt 0")])
    (tmp_path / "data").mkdir()
    (tmp_path / "data/validated.jsonl").write_text("stale output of an earlier run\n")
    error, rejects, metrics, validated = run_validate(tmp_path, data, max_reject_fraction=0.2)
    assert_error(error, "4 of 12 lines", "0.3333", "validate.max_reject_fraction 0.2",
                 "not_json 2", "not_object 1", "duplicate 1", "data/rejects.jsonl")
    assert len(rejects) == 4 and metrics["rejected"] == 4  # written for inspection
    assert validated is None  # never left behind, not even a stale one


def write_lines(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_parallel_first_pass_matches_serial(tmp_path: Path) -> None:
    """Worker processes see line-aligned byte ranges: codes and digests must not depend on their number."""
    lines = []
    for i in range(3000):
        lines.append(json.dumps(row(f"prompt {i % 700}", f"chosen {i}", f"rejected {i % 5}")).encode())
        if i % 97 == 0:
            lines += [b"", b"[1]", "\u00e9t\u00e9 {".encode(), b"\xff"]
    ends = [b"\n", b"\r\n", b"\r"]
    body = b"\xef\xbb\xbf" + b"".join(line + ends[i % 3] for i, line in enumerate(lines))
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(body)
    serial = InputFile(path, 10_000).first_pass(workers=1)
    parallel = InputFile(path, 10_000).first_pass(workers=3)
    assert len(serial[0]) == len(body[3:].splitlines())  # bytes.splitlines: the same three line endings
    assert np.array_equal(serial[0], parallel[0]) and np.array_equal(serial[1], parallel[1])
    ranges = line_io.line_ranges(path, 12)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(body) and len(ranges) > 1
    assert all(a[1] == b[0] and body[b[0] - 1:b[0]] == b"\n" for a, b in zip(ranges, ranges[1:]))


def test_huge_line_is_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"a" * (3 * line_io.CHUNK + 5) + b"\r\n" + b"next\r" + b"last")
    assert list(line_io.file_lines(path, limit=100)) == [b"a" * 101, b"next", b"last"]
