"""The shipped dataset/financial_rewards.jsonl: format, no duplicates or contradictions, weak surface cues,
and byte-identical regeneration by dataset/make_financial_rewards.py.

The cue checks are re-implemented here rather than imported, so a bug in the generator's own summary can't hide
a shortcut a reward model could learn.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "dataset" / "financial_rewards.jsonl"
GENERATOR = ROOT / "dataset" / "make_financial_rewards.py"
MIN_ROWS = 2000
MAX_LONGER_CHOSEN = 0.65
MAX_CUE_ACCURACY = 0.70
TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def norm(text: str) -> str:
    """How the validate stage compares texts (rewardkit.text.normalise, re-implemented on purpose)."""
    return " ".join(text.split()).casefold()


@pytest.fixture(scope="module")
def raw() -> bytes:
    return DATA.read_bytes()


@pytest.fixture(scope="module")
def rows(raw: bytes) -> list[dict]:
    return [json.loads(line) for line in raw.decode("utf-8").split("\n")[:-1]]


def test_size_and_line_format(raw: bytes, rows: list[dict]) -> None:
    assert raw.endswith(b"\n") and b"\r" not in raw
    assert len(rows) >= MIN_ROWS
    assert len(rows) == raw.count(b"\n")


def test_fields(rows: list[dict]) -> None:
    for row in rows:
        assert isinstance(row, dict)
        assert list(row) == ["prompt", "chosen", "rejected", "id", "category"], row.get("id")
        assert all(isinstance(v, str) and v.strip() for v in row.values()), row["id"]
    assert len({row["id"] for row in rows}) == len(rows)


def test_prompt_and_response_shape(rows: list[dict]) -> None:
    multi_turn = set()
    for row in rows:
        prompt = row["prompt"]
        assert prompt.startswith("User: ") and prompt.endswith("\nAssistant:"), row["id"]
        if prompt.count("\nUser: ") > 0:
            multi_turn.add(prompt)
        for side in ("chosen", "rejected"):
            text = row[side]
            assert text.startswith(" ") and not text.startswith("  ") and text == text.rstrip(), (row["id"], side)
            assert "{" not in text and "}" not in text, (row["id"], side)
            assert not re.search(r"\b(None|nan|inf)\b", text), (row["id"], side)
    prompts = {row["prompt"] for row in rows}
    assert 0.05 <= len(multi_turn) / len(prompts) <= 0.3


def test_no_duplicates_or_contradictions(rows: list[dict]) -> None:
    keys = [(norm(r["prompt"]), norm(r["chosen"]), norm(r["rejected"])) for r in rows]
    assert len(set(keys)) == len(keys), "duplicate or near-duplicate rows"
    key_set = set(keys)
    for prompt, chosen, rejected in keys:
        assert chosen != rejected
        assert (prompt, rejected, chosen) not in key_set, f"contradictory pair for prompt {prompt[:60]!r}"


def test_some_prompts_have_several_pairs(rows: list[dict]) -> None:
    per_prompt = Counter(row["prompt"] for row in rows)
    assert max(per_prompt.values()) <= 3
    assert sum(1 for c in per_prompt.values() if c > 1) >= len(per_prompt) // 4


def test_categories(rows: list[dict]) -> None:
    counts = Counter(row["category"] for row in rows)
    expected = {"interest", "loans", "ratios", "returns", "inflation", "tax", "diversification", "risk",
                "definitions"}
    assert set(counts) == expected
    assert min(counts.values()) >= 0.04 * len(rows)


def test_length_is_not_a_cue(rows: list[dict]) -> None:
    longer = sum(len(r["chosen"]) > len(r["rejected"]) for r in rows) / len(rows)
    assert longer <= MAX_LONGER_CHOSEN
    assert longer >= 1 - MAX_LONGER_CHOSEN  # nor its mirror image


def _features(text: str) -> set[str]:
    words = text.lower().split()
    return ({"tok:" + t for t in TOKEN_RE.findall(text.lower())}
            | {"first1:" + " ".join(words[:1]), "first3:" + " ".join(words[:3])})


def test_no_single_token_or_opening_separates_pairs(rows: list[dict]) -> None:
    """For each feature f, the rule 'the answer with f is chosen' (ties 1/2) and its opposite stay <= 0.70."""
    only = defaultdict(int)  # feature -> (#pairs only chosen has it) - (#pairs only rejected has it)
    for row in rows:
        fc, fr = _features(row["chosen"]), _features(row["rejected"])
        for f in fc - fr:
            only[f] += 1
        for f in fr - fc:
            only[f] -= 1
    worst = max(only, key=lambda f: abs(only[f]))
    accuracy = 0.5 + abs(only[worst]) / (2 * len(rows))
    assert accuracy <= MAX_CUE_ACCURACY, f"{worst!r} alone separates pairs with accuracy {accuracy:.3f}"


@pytest.fixture(scope="module")
def generator():
    """dataset/make_financial_rewards.py imported by path (dataset/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_financial_rewards", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is built
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_regenerates_byte_identical(tmp_path: Path, raw: bytes, generator, capsys) -> None:
    out = tmp_path / "regen.jsonl"
    assert generator.main(["--out", str(out)]) == 0, capsys.readouterr().err  # default seed and n
    assert out.read_bytes() == raw, "dataset/financial_rewards.jsonl is stale: rerun the generator"
    printed = capsys.readouterr().out
    assert "2400 pairs" in printed and "longer answer is the chosen one" in printed


def test_seed_and_n(generator) -> None:
    a, b = generator.generate(seed=1, n=300), generator.generate(seed=2, n=300)
    assert len(a) == 300 and a == generator.generate(seed=1, n=300)
    assert a != b
    assert [row["id"] for row in a] == [f"fin-{i:05d}" for i in range(1, 301)]
