"""The GPU readiness check runs end to end on a CPU (`--device cpu --quick`): every step of it, TRL included,
succeeds and the table and JSON it writes say so. On the day a GPU is lent the same script runs with --device cuda."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import REPO_ROOT as ROOT
from tests.conftest import subprocess_env

pytest.importorskip("trl", reason="TRL is a bench-only dependency (bench/requirements.txt)")


@pytest.mark.e2e
def test_quick_cpu_check_runs_every_step(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--device", "cpu", "--quick", "--out", str(out)], cwd=ROOT,
                          env=subprocess_env(BENCH_OUT=str(tmp_path / "bench")), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (out / "gpu_check.md").read_text(encoding="utf-8")
    assert table in proc.stdout + "\n"
    checks = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in table.splitlines()
              if line.startswith("| ") and not line.startswith("| check")}
    assert set(checks) == {"ours train", "trl train (RewardTrainer)", "ours eval",
                           "torchrun --nproc-per-node 1 train stage", "DDP, 1 process"}
    assert all(result.startswith("ok") for result in checks.values()), checks
    results = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    assert results["ours"]["tokens"] > 0 and results["trl"]["tokens"] > 0 and results["ceiling"]["model_gemm"] > 0
    assert results["ddp"]["backend"] == "gloo" and results["ddp"]["params_changed"] > 0
    assert "ours/trl:" in table
