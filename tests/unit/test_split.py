"""The split stage's library code: prompt-disjoint sides, exact eval fraction, determinism, seed, stability under
append, guards."""
from __future__ import annotations

import json
import random
from collections import Counter
from hashlib import blake2b
from pathlib import Path

import numpy as np
import pytest

from rewardkit.config import SplitConfig
from rewardkit.data.splitting import SplitOutputs, prompt_hashes, split_file
from rewardkit.errors import UserError


def make_lines(n_prompts: int, seed: int = 0, tag: str = "p") -> list[bytes]:
    """Validated-style lines: 1-5 pairs per prompt, spelled with varying case and whitespace, shuffled."""
    rng = random.Random(seed)
    lines = []
    for i in range(n_prompts):
        for j in range(rng.randint(1, 5)):
            prompt = rng.choice([f"Prompt {tag}{i} about rates?", f"  prompt {tag}{i}   ABOUT rates?",
                                 f"PROMPT\t{tag}{i} about\nrates? "])
            row = {"prompt": prompt, "chosen": f"good {j}", "rejected": f"bad {j}", "id": f"{tag}{i}-{j}"}
            lines.append(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    rng.shuffle(lines)
    return lines


def spec_u(prompt: str, seed: int) -> int:
    """u as the split docstring defines it, computed independently of the module."""
    normalised = " ".join(prompt.split()).casefold()
    return int.from_bytes(blake2b(normalised.encode(), key=str(seed).encode(), digest_size=8).digest(), "big")


def run_split(workdir: Path, lines: list[bytes], eval_fraction: float = 0.1, seed: int = 7) -> dict:
    """Write workdir/validated.jsonl, split it; return the outputs."""
    (workdir / "validated.jsonl").write_bytes(b"".join(lines))
    out = SplitOutputs(workdir / "train.jsonl", workdir / "eval.jsonl", workdir / "split.json")
    split_file(workdir / "validated.jsonl", out, SplitConfig(eval_fraction=eval_fraction, seed=seed))
    return {"train": out.train.read_bytes(), "eval": out.eval.read_bytes(),
            "metrics": json.loads(out.metrics.read_text())}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def normalised_prompt(line: bytes) -> str:
    return " ".join(json.loads(line)["prompt"].split()).casefold()


def test_sides_are_disjoint_by_normalised_prompt(workdir: Path) -> None:
    out = run_split(workdir, make_lines(600))
    train = {normalised_prompt(x) for x in out["train"].splitlines()}
    evals = {normalised_prompt(x) for x in out["eval"].splitlines()}
    assert train and evals and not train & evals
    raw_eval_prompts = {json.loads(x)["prompt"] for x in out["eval"].splitlines()}
    assert len(raw_eval_prompts) > len(evals)  # spelling variants of one prompt were kept together
    m = out["metrics"]
    assert m["prompts_on_both_sides"] == 0
    assert (m["train_prompts"], m["eval_prompts"]) == (len(train), len(evals))


def test_union_is_the_input_in_order(workdir: Path) -> None:
    lines = make_lines(400) + [b'  {"prompt": "Padded", "chosen": "a", "rejected": "b"} \n']
    out = run_split(workdir, lines)
    train, evals = out["train"].splitlines(keepends=True), out["eval"].splitlines(keepends=True)
    assert Counter(train + evals) == Counter(lines)
    eval_set = set(evals)
    assert train == [x for x in lines if x not in eval_set] and evals == [x for x in lines if x in eval_set]
    assert (out["metrics"]["train_pairs"], out["metrics"]["eval_pairs"]) == (len(train), len(evals))


def test_deterministic(workdir: Path) -> None:
    lines = make_lines(300)
    first = run_split(workdir, lines)
    assert run_split(workdir, lines) == first


def test_another_seed_gives_another_split(workdir: Path) -> None:
    lines = make_lines(300)
    assert run_split(workdir, lines, seed=1)["eval"] != run_split(workdir, lines, seed=2)["eval"]


@pytest.mark.parametrize("eval_fraction", [0.05, 0.1, 0.3, 0.5])
def test_eval_takes_smallest_u_groups_until_the_target(workdir: Path, eval_fraction: float) -> None:
    lines = make_lines(500, seed=3)
    out = run_split(workdir, lines, eval_fraction=eval_fraction, seed=11)
    sizes = Counter(spec_u(json.loads(x)["prompt"], 11) for x in lines)
    eval_u = Counter(spec_u(json.loads(x)["prompt"], 11) for x in out["eval"].splitlines())
    ordered = sorted(sizes)
    assert sorted(eval_u) == ordered[:len(eval_u)]  # a prefix of the groups sorted by u
    assert all(eval_u[u] == sizes[u] for u in eval_u)  # whole groups
    target = int(eval_fraction * len(lines) + 0.5)
    eval_pairs = out["metrics"]["eval_pairs"]
    assert target <= eval_pairs < target + sizes[max(eval_u)]  # off by less than the last group
    assert out["metrics"]["eval_fraction_actual"] == round(eval_pairs / len(lines), 6)


def test_append_moves_only_pairs_between_the_cutoffs(workdir: Path) -> None:
    old = make_lines(1700, seed=5)
    new = make_lines(340, seed=6, tag="new")
    assert 0.15 < len(new) / len(old) < 0.25  # about 20% new pairs, all with new prompts
    before = run_split(workdir, old, seed=9)
    after = run_split(workdir, old + new, seed=9)
    was_eval, is_eval = set(before["eval"].splitlines()), set(after["eval"].splitlines())
    cut_old = max(spec_u(json.loads(x)["prompt"], 9) for x in was_eval)
    cut_new = max(spec_u(json.loads(x)["prompt"], 9) for x in is_eval)
    moved = [x for x in old if (x.rstrip(b"\n") in was_eval) != (x.rstrip(b"\n") in is_eval)]
    assert len(moved) / len(old) <= 0.02
    low, high = sorted((cut_old, cut_new))
    assert all(low < spec_u(json.loads(x)["prompt"], 9) <= high for x in moved)


def test_parallel_hashing_matches_serial(workdir: Path) -> None:
    path = workdir / "validated.jsonl"
    path.write_bytes(b"".join(make_lines(800)))
    serial = prompt_hashes(path, 3, workers=1)
    assert np.array_equal(prompt_hashes(path, 3, workers=2), serial)
    first = path.read_bytes().splitlines()[:5]
    assert [int(u) for u in serial[:5]] == [spec_u(json.loads(x)["prompt"], 3) for x in first]


def test_guard_zero_eval_pairs(workdir: Path) -> None:
    with pytest.raises(UserError, match=r"split.eval_fraction = 0.001 of \d+ pairs gives 0 eval pairs"):
        run_split(workdir, make_lines(50), eval_fraction=0.001)


def test_guard_everything_in_eval(workdir: Path) -> None:
    one_prompt = [json.dumps({"prompt": "Only one?", "chosen": f"a{i}", "rejected": f"b{i}"}).encode() + b"\n"
                  for i in range(20)]
    with pytest.raises(UserError, match=r"split.eval_fraction = 0.1 would put all 20 pairs \(1 prompt"):
        run_split(workdir, one_prompt)
