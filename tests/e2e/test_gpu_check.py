"""The GPU readiness check's one command on a CPU (`bash bench/gpu_check.sh --device cpu --quick`): it exits 0, the
table it prints is the one it writes, and every row passes (TRL's may say "skipped: TRL not installed")."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import REPO_ROOT as ROOT
from tests.conftest import subprocess_env


@pytest.mark.e2e
def test_quick_cpu_check_runs_every_step(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--device", "cpu", "--quick", "--out", str(out)], cwd=ROOT,
                          env=subprocess_env(BENCH_OUT=str(tmp_path / "bench")), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (out / "gpu_check.md").read_text(encoding="utf-8")
    assert table in proc.stdout + "\n"
    rows = {r["check"]: r["status"] for r in json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))}
    assert rows.pop("TRL RewardTrainer (speed)") in ("pass", "skipped: TRL not installed")
    assert len(rows) >= 7 and set(rows.values()) == {"pass"}, rows
