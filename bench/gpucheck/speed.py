"""Check 3: our trainer against TRL's RewardTrainer on the device, same model directory, data, batch and length:
pairs/s and tokens/s over the timed steps (after a synchronize), model TFLOP/s (6 x non-embedding params x tokens
+ attention), MFU against the model's own matmuls timed on the device (bench.system.model_gemm_peak), peak GPU
memory. Ours runs in this process (bench.ours, the train stage's loop); TRL in a child with a time limit, and
without TRL installed its row says "skipped: TRL not installed". The ratio is reported, not gated (#25's target,
ours >= 1.5x TRL tokens/s, is judged in bench/RESULTS.md on stable runs)."""
from __future__ import annotations

import importlib.util

from bench import system, workloads
from bench.gpucheck.common import ROOT, Row, Setup, child, python
from bench.ours import time_training

WARMUP = {True: 1, False: 3}
MAX_LENGTH = 512  # also in --quick: TRL drops the pairs longer than this, and would keep too few of them


def model_flops(config, n_params: int, result: dict) -> float:
    return 6 * n_params * result["tokens"] + system.attention_flops(config, result.get("sq_tokens", 0), True)


def describe(result: dict, config, n_params: int, ceiling: float) -> str:
    seconds = result["s_per_step"] * result["steps"]
    flops = model_flops(config, n_params, result) / seconds / 1e12
    memory = f", peak GPU memory {result['peak_gpu_mb']:,.0f} MB" if "peak_gpu_mb" in result else ""
    return (f"{result['pairs_per_s']:.2f} pairs/s, {result['tokens'] / seconds:,.0f} tokens/s, {flops:.3f} "
            f"TFLOP/s, MFU {100 * flops / ceiling:.1f}%{memory}")


def run(setup: Setup, precision: str, train_rows, timeout: float) -> list[Row]:
    from bench.__main__ import model_config, non_embedding_params

    config = model_config(setup.model)
    n_params = non_embedding_params(config)
    warmup = WARMUP[setup.quick]
    data = workloads.first_rows(train_rows, (setup.steps + warmup) * setup.batch)
    ours = {**time_training(str(setup.model), str(data), setup.steps, warmup, setup.batch, MAX_LENGTH,
                            device_name=str(setup.device), precision=precision), "steps": setup.steps}
    rows_per_step = round(ours["tokens"] / setup.steps)
    ceiling = system.model_gemm_peak(system.layer_gemms(config.hidden_size, config.intermediate_size, rows_per_step),
                                     True, 2, 5, setup.device.type) / 1e3
    setting = f"{precision}, batch {setup.batch} pairs, length {MAX_LENGTH}, {setup.steps} timed steps"
    rows = [Row("ours train (speed)", "pass", describe(ours, config, n_params, ceiling), "",
                f"{setting}; ceiling {ceiling:.3f} TFLOP/s (model matmuls at {rows_per_step:,} rows)", ours)]
    if importlib.util.find_spec("trl") is None:
        return rows + [Row("TRL RewardTrainer (speed)", "skipped: TRL not installed")]
    # TRL drops the pairs longer than max length: the few quick pairs would leave it no batch, so it gets more
    pairs = (setup.steps + warmup) * setup.batch * (4 if setup.quick else 1)
    trl = child("trl", [*python(), str(ROOT / "bench" / "peers" / "trl_rm.py"), str(setup.model),
                        str(workloads.first_rows(train_rows, pairs)), "--steps", str(setup.steps), "--warmup",
                        str(warmup), "--batch", str(setup.batch), "--max-length", str(MAX_LENGTH),
                        "--device", setup.device.type, *(["--bf16"] if precision == "bf16" else [])], setup, timeout)
    if not trl["ok"] or not trl.get("tokens"):
        return rows + [Row("TRL RewardTrainer (speed)", "FAIL", notes=trl.get("error", "no tokens reported"))]
    trl["steps"] = setup.steps
    ratio = (ours["tokens"] / ours["s_per_step"]) / (trl["tokens"] / trl["s_per_step"])
    return rows + [Row("TRL RewardTrainer (speed)", "pass", describe(trl, config, n_params, ceiling), "",
                       f"{setting}; kept {trl.get('kept_pairs', '?')} of {pairs} pairs", trl),
                   Row("ours vs TRL", "pass", f"{ratio:.2f}x tokens/s, {ours['pairs_per_s'] / trl['pairs_per_s']:.2f}x "
                       "pairs/s", "reported, not gated", "#25 target: >= 1.5x tokens/s")]
