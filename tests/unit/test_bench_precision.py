"""bench.precision: the bf16 verdicts of `python -m bench`, read from the rows and ceilings the bench builds."""
from __future__ import annotations

from bench.precision import precision_verdicts


def row(workload: str, impl: str, pairs_s: float, tokens_s: float, gflops: float = 0.0) -> dict:
    return {"workload": workload, "impl": impl, "pairs_s": pairs_s, "tokens_s": tokens_s, "gflops": gflops}


def test_each_bf16_target_is_read_against_its_own_peer_and_ceiling():
    rows = [row("small", "ours", 0.7, 560), row("small", "trl", 0.3, 200), row("small", "ours eval", 1.5, 1300),
            row("small", "ours bf16", 1.2, 940, gflops=290), row("small", "trl bf16", 0.5, 700),
            row("small", "ours eval bf16", 3.0, 2600),
            row("tiny", "ours", 20, 16000), row("tiny", "trl", 4, 2900), row("tiny", "ours eval", 40, 32000),
            row("tiny", "ours bf16", 25, 20000), row("tiny", "trl bf16", 4, 3000),
            row("tiny", "ours eval bf16", 60, 48000)]
    ceilings = {"small": {"fp32": {"train": 190}, "bf16": {"train": 380}}, "tiny": {"bf16": {"train": 350}}}
    lines = precision_verdicts(rows, ceilings)
    assert "small: ours bf16/fp32 = 1.68x tokens/s" in lines
    assert "target small ours bf16 >= 3x trl fp32 tokens/s: 4.70x, met" in lines
    assert "target small ours bf16 >= 1.5x trl bf16 tokens/s: 1.34x, MISSED" in lines
    assert "target small ours bf16 >= 60% of the bf16 model-GEMM peak: 76%, met" in lines  # 290 / 380, not / 190
    assert "target tiny ours >= 6x trl pairs/s: 5.00x, MISSED" in lines
    assert "target tiny ours bf16 >= 6x trl bf16 pairs/s: 6.25x, met" in lines
    assert "target tiny evaluation bf16 >= 1.8x fp32 pairs/s: 1.50x, MISSED" in lines
    assert "target small evaluation bf16 >= 1.8x fp32 pairs/s: 2.00x, met" in lines


def test_fp32_only_runs_have_no_bf16_verdicts():
    rows = [row("tiny", "ours", 20, 16000), row("tiny", "trl", 4, 2900), row("tiny", "ours eval", 40, 32000)]
    assert precision_verdicts(rows, {"tiny": {"fp32": {"train": 150}}}) == []
