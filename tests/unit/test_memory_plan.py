"""bench.memory_plan's accounting: parameter counts of the published bases, bytes per parameter per strategy.
That docs/scaling.md holds what the script computes now (it measures activations: ~30 s): tests/e2e/test_bench.py."""
from __future__ import annotations

import numpy as np
import pytest

from bench import memory_plan


@pytest.mark.parametrize("name,published", [
    ("Qwen2.5-0.5B", 0.494e9),  # its embeddings are tied to the LM head, which a classifier does not have
    ("Llama-3.1-8B", 8.030e9 - 128256 * 4096),  # the published count includes the LM head
    ("Llama-3.1-70B", 70.554e9 - 128256 * 8192),
])
def test_parameters_are_counted_from_the_published_architectures(name, published):
    assert memory_plan.base(name).params == pytest.approx(published, rel=0.005)


def test_bytes_per_parameter_follow_what_each_strategy_holds():
    b = memory_plan.base("Llama-3.1-8B")
    per_param = lambda *args: memory_plan.model_state(b, *args) / b.params  # noqa: E731
    assert per_param("ddp", "fp32", 1, False) == 16  # weights, grads, two AdamW moments, all fp32
    assert per_param("ddp", "bf16", 1, False) == 18  # + the bf16 copies autocast keeps for backward
    assert per_param("ddp", "bf16", 8, False) == 22  # + DDP's gradient buckets
    sharded = [per_param("fsdp", "bf16", n, False) for n in (2, 8, 16)]
    assert sharded[0] > sharded[1] > sharded[2] > 1  # 16/N plus the unsharded layers, which do not shrink
    assert sharded[1] - 16 / 8 == pytest.approx(sharded[2] - 16 / 16)
    assert per_param("fsdp", "bf16", 8, True) < per_param("ddp", "bf16", 1, True) < per_param("ddp", "bf16", 1, False)


def test_a_base_fits_where_its_leanest_need_is_within_the_budget(monkeypatch):
    # no measurement here: fixed coefficients of the right size (a Llama-8B layer saves ~240 kB a token, keeps 4h
    # bytes with checkpointing)
    monkeypatch.setattr(memory_plan, "activation_coefficients", lambda checkpointed, lora: np.array(
        [4, 0, 0, 0, 0] if checkpointed else [26, 6, 8, 0, 0], float))
    small, huge = memory_plan.base("Qwen2.5-0.5B"), memory_plan.base("Llama-3.1-70B")
    assert memory_plan.fit(small, 1).startswith("ddp (")
    assert memory_plan.fit(huge, 1).startswith("does not fit (ddp + checkpointing + LoRA r=16: ")
    assert memory_plan.fit(huge, 16).startswith("fsdp + checkpointing + LoRA r=16 (")
    need = memory_plan.per_gpu(huge, "fsdp", True, True, 16)
    assert need <= memory_plan.BUDGET * memory_plan.GPU_BYTES < memory_plan.per_gpu(huge, "fsdp", True, False, 16)
