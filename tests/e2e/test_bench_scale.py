"""bench.scale_targets (#25's targets): the trl and qwen parts run on a tiny decoder and save what the report reads
(the report's verdicts: tests/unit/test_scale_report.py)."""
from __future__ import annotations

import json
import subprocess
import sys

from bench import workloads
from bench.scale_report import section
from tests.conftest import REPO_ROOT as ROOT
from tests.conftest import subprocess_env
from tests.e2e.test_bench import tiny_decoder_dir


def test_scale_targets_runs_trl_at_its_defaults_against_ours_and_qwen_where_it_fits(tmp_path):
    env = subprocess_env(BENCH_OUT=str(tmp_path))
    model = tiny_decoder_dir(tmp_path / "model", workloads.read_jsonl(workloads.bench_data()[0])[:40])
    proc = subprocess.run([sys.executable, "-m", "bench.scale_targets", "--parts", "trl", "qwen", "--trl-runs",
                           "defaults", "--model", str(model), "--qwen-model", str(model), "--batch", "1",
                           "--max-length", "1024", "--qwen-length", "64"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = {p: json.loads((tmp_path / "scale_targets" / f"{p}.json").read_text()) for p in ("trl", "qwen")}
    trl = parts["trl"]["result"]
    assert set(trl) == {"ours bf16+ckpt", "trl defaults"}
    assert trl["trl defaults"]["settings"] == "--bf16 --gradient-checkpointing --lr 1e-4"
    assert all(trl[k]["tokens_per_s"] > 0 and trl[k]["peak_rss_mb"] > 100 for k in trl)
    qwen = parts["qwen"]["result"]
    assert qwen["params"] > 490_000_000 and set(qwen["runs"]) == {"fsdp", "ddp"}
    # ddp's per-rank need is computed from Qwen2-0.5B's dims: more than twice fsdp's
    assert qwen["model_state_mb"]["ddp"] > 2 * qwen["model_state_mb"]["fsdp"]
    fsdp = qwen["runs"]["fsdp"]  # each rank's live tensors are saved for the report's model-state verdict
    assert [r["rank"] for r in fsdp["ranks"]] == [0, 1] and all(r["optimizer_mb"] > r["params_mb"] > 0
                                                                 for r in fsdp["ranks"])
    text = "\n".join(section(parts))
    assert "- target ours bf16+ckpt >= 1.5x trl defaults tokens/s: " in text and "| fsdp | " in text
    assert "- target fsdp model+grads+AdamW per rank <= 0.6x ddp's: " in text
