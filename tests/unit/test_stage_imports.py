"""The data stages' entry points import neither torch nor transformers: they run in ~35-100 MB (bench/RESULTS.md,
2026-12-07 23:12, import cost), where torch alone costs ~200 MB and the transformers modeling chain ~110 MB more."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "sentencepiece", "tokenizers", "peft", "dvclive")


def imported_after(module: str) -> list[str]:
    """The HEAVY modules in sys.modules after a fresh interpreter imports `module`."""
    code = f"import json, sys, {module}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("stage", ["validate", "split", "tokenize", "summary"])
def test_a_data_stage_imports_no_model_library(stage):
    assert imported_after(f"stages.{stage}") == []


def test_the_check_sees_a_model_library_when_one_is_imported():
    assert "torch" in imported_after("rewardkit.modeling.batching")
