"""Tiny models and easy preference data for tests: no network, a few seconds on 2 CPU cores."""
from __future__ import annotations

import json
import random
from pathlib import Path

from stages import modeling

# DeBERTa-v3 architecture at test size (everything but the sizes as in deberta-v3-small)
TINY = dict(modeling.DEBERTA_V3_SMALL, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=128)


def easy_rows(n: int, seed: int = 0, prefix: str = "") -> list[dict]:
    """Arithmetic questions whose chosen answer is right and rejected answer hedges with a wrong sum."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a, b = rng.randint(1, 999), rng.randint(1, 999)
        prompt = f"User: {prefix}what is {a} plus {b}? (case {seed}-{i})\nAssistant:"
        wrong = a + b + rng.choice([-10, -2, -1, 1, 3, 7])
        rows.append({"prompt": prompt, "chosen": f" The sum is {a + b}.",
                     "rejected": f" Probably about {wrong}, but I am not sure."})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tiny_model_dir(out_dir: Path, rows: list[dict], seed: int = 0, vocab_size: int = 400, **sizes) -> Path:
    """A randomly initialised tiny DeBERTa-v3 reward model and a SentencePiece tokenizer trained on `rows`."""
    texts = [t for r in rows for t in (r["prompt"], r["chosen"], r["rejected"])]
    saved = modeling.SCRATCH_SIZES.get("test-tiny")
    modeling.SCRATCH_SIZES["test-tiny"] = dict(TINY, **sizes)
    try:
        return modeling.build_scratch("test-tiny", texts, vocab_size, out_dir, seed)
    finally:
        if saved is None:
            modeling.SCRATCH_SIZES.pop("test-tiny")


REPO = Path(__file__).resolve().parents[1]


def stage_workdir(root: Path, train_rows: list[dict], eval_rows: list[dict] | None = None, **overrides) -> Path:
    """A working directory for running stages directly: params.yaml (the project's, with `section.key`
    overrides given as section__key=value) and data/train.jsonl (+ data/eval.jsonl)."""
    import yaml

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        params[section][key] = value
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_jsonl(root / "data" / "train.jsonl", train_rows)
    if eval_rows is not None:
        write_jsonl(root / "data" / "eval.jsonl", eval_rows)
    return root


def run_module(cwd: Path, module: str, *args: str, timeout: float = 600, **popen):
    """`python -m <module>` in `cwd` with the project importable; returns the CompletedProcess (text output)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, **popen)
