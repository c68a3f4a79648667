"""bench.gpu_fsdp, the GPU check's fsdp + LoRA step, on the CPU: fp32, and bf16 (the CPU's bf16 autocast and
FSDP's bf16 policy standing in for CUDA's)."""
from __future__ import annotations

import json

import pytest

from bench import gpu_fsdp


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_fsdp_lora_step_passes_on_the_cpu(precision, capsys):
    assert gpu_fsdp.main("cpu", steps=4, precision=precision) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["ok"] and report["precision"] == precision
    for family in ("deberta", "llama"):
        check = report["checks"][family]
        assert check["rewards_match"] and check["gathered_matches"] and check["loss_falls"], check
