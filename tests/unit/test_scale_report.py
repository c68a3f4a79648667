"""bench.scale_report: each #25 target's verdict is computed from the saved figures (met and missed both)."""
from __future__ import annotations

from bench.scale_report import section

STAMP = {"command": "python -m bench.scale_targets", "date": "2026-12-07", "load_start": 1.0, "load_end": 2.0,
         "steps": 1, "warmup": 1, "batch": 8, "max_length": 1024}


def run(tokens_per_s: float, s_per_step: float, peak: float, trainable: int = 100) -> dict:
    return {"tokens_per_s": tokens_per_s, "s_per_step": s_per_step, "peak_rss_mb": peak, "trainable": trainable,
            "model_part_mb": 1.0}


def rank(params: float, grads: float, optimizer: float, peak: float) -> dict:
    return {"params_mb": params, "grads_mb": grads, "optimizer_mb": optimizer, "peak_rss_mb": peak,
            "rss_before_mb": 400.0, "rss_after_step1_mb": 400.0 + params + optimizer}


def accuracy(acc: float, trainable: int) -> list[dict]:
    return [{"accuracy": acc, "seed": 0, "trainable": trainable, "total": 100, "held_out": 400}]


def parts(ckpt_peak: float, ckpt_time: float, lora_acc: float, trl_rate: float) -> dict:
    return {"ckpt": {**STAMP, "result": {"ddp": run(100, 10, 10000), "ddp+ckpt": run(80, ckpt_time, ckpt_peak),
                                         "ddp+lora16": run(120, 8, 9000, 5)}},
            "trl": {**STAMP, "result": {"ours bf16+ckpt": run(300, 5, 5000),
                                        "trl defaults": {**run(trl_rate, 9, 8000), "settings": "--bf16"}}},
            "lora": {**STAMP, "result": {"steps": 100, "lr": 3e-4, "batch": 10, "max_length": 512,
                                         "r0": accuracy(0.80, 100), "r16": accuracy(lora_acc, 9),
                                         "r16 lr0.003": accuracy(0.79, 9)}},
            "qwen": {**STAMP, "result": {"params": 494_000_000, "batch": 2, "max_length": 128,
                                         "available_mb": 19000.0, "full_load_mb": 1885.0,
                                         "model_state_mb": {"ddp": 9425.0, "fsdp": 3900.0},
                                         "runs": {"fsdp": run(50, 20, 8000), "ddp": None}}}}


def test_each_target_is_met_or_missed_from_the_figures():
    text = "\n".join(section(parts(ckpt_peak=5000, ckpt_time=13, lora_acc=0.78, trl_rate=150)))
    assert "- target checkpointing peak >= 40% lower: 50% lower, met" in text
    assert "- target checkpointing step time <= 1.4x: 1.30x, met" in text
    assert "- target ours bf16+ckpt >= 1.5x trl defaults tokens/s: 2.00x, met" in text
    assert "- target ours fp32 >= 1.5x trl fp32 tokens/s: not run" in text
    assert "- target LoRA within 2 standard errors of full fine-tuning: -0.020 on 400 pairs" in text
    assert "0.071: met" in text and "- LoRA r16 lr0.003 vs full fine-tuning at lr 0.0003: -0.010 (met)" in text
    assert "| ddp | 9,425 | not run: 2 x (9,425 + 1,885 full load) + 2,048" in text
    assert "| fsdp | 3,900 | - | - | 50.0 | 20.0 | - |" in text  # a run saved without its ranks

    text = "\n".join(section(parts(ckpt_peak=7000, ckpt_time=15, lora_acc=0.55, trl_rate=250)))
    assert "30% lower, MISSED" in text and "1.50x, MISSED" in text
    assert "trl defaults tokens/s: 1.20x, MISSED" in text and "-0.250 on 400 pairs" in text
    assert "0.071: MISSED" in text


def qwen(fsdp_ranks: list[dict], ddp: dict | None = None) -> dict:
    return {"qwen": {**STAMP, "result": {"params": 494_000_000, "batch": 2, "max_length": 128, "available_mb": 21000.0,
                                         "full_load_mb": 1885.0, "model_state_mb": {"ddp": 9425.0, "fsdp": 4460.0},
                                         "runs": {"fsdp": {**run(12.8, 39.9, 6500), "ranks": fsdp_ranks},
                                                  "ddp": ddp}}}}


def test_trl_at_our_settings_and_the_qwen_fsdp_state_get_verdicts_and_a_title_naming_only_those_parts():
    ours = {"trl": {**STAMP, "result": {"ours fp32": run(78, 36, 7000), "trl fp32": {**run(48, 68, 12300),
                                                                                      "settings": "fp32"}}}}
    text = "\n".join(section({**ours, **qwen([rank(942, 942, 1885, 6500), rank(942, 942, 1885, 6499)])}))
    assert text.startswith("## 2026-12-07: #25 targets: ours vs TRL, Qwen2-0.5B dims with fsdp (python -m")
    assert "- target ours fp32 >= 1.5x trl fp32 tokens/s: 1.62x, met; peak RSS 7,000 vs 12,300 MB (0.57x)" in text
    assert "- target ours bf16+ckpt >= 1.5x trl defaults tokens/s: not run" in text
    assert "| fsdp | 4,460 | 3,769 / 3,769 | 2,827 / 2,827 | 12.8 | 39.9 | 6,500 / 6,499 |" in text
    assert "2 x (9,425 + 1,885 full load) + 2,048 activations and baseline = 24,668 MB > 21,000 MB" in text
    assert "- target fsdp model+grads+AdamW per rank <= 0.6x ddp's: 3,769 MB live vs 9,425 MB ddp computed (not " \
           "run): 0.40x, met" in text
    assert "3,769 vs 4,460 MB computed" in text

    ours["trl"]["result"]["trl fp32"]["tokens_per_s"] = 60
    ddp = {**run(20, 30, 12000), "ranks": [rank(1885, 1885, 3770, 12000)] * 2}  # a measured ddp run is preferred
    text = "\n".join(section({**ours, **qwen([rank(1885, 942, 1885, 7000)] * 2, ddp)}))
    assert "trl fp32 tokens/s: 1.30x, MISSED" in text
    assert "4,712 MB live vs 7,540 MB ddp measured: 0.62x, MISSED" in text
