"""The RESULTS.md section of bench.scale_targets: its saved parts as tables, each #25 target with its verdict."""
from __future__ import annotations

import statistics

from bench import system


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def header(parts: dict) -> list[str]:
    first = next(iter(parts.values()))
    lines = [f"## {first['date']}: #25 targets: checkpointing at length 1024, TRL, LoRA quality, Qwen2-0.5B dims "
             "(python -m bench.scale_targets)", "",
             f"- machine: {system.machine()}; each part held the heavy lock (the machine to itself)"]
    for name, p in parts.items():
        lines.append(f"- {name}: `{p['command']}`, load {p['load_start']:.2f} at start, {p['load_end']:.2f} at end")
    return lines


def ckpt_lines(p: dict) -> list[str]:
    r = p["result"]
    lines = ["", f"Activation checkpointing, SmolLM2-135M dims, 1 process (2 threads), batch {p['batch']} pairs, max "
             f"length {p['max_length']}, fp32, {p['steps']} timed step(s) after {p['warmup']} (our train loop, "
             "prefix sharing auto):", "",
             "| config | tokens/s | s/step | peak RSS MB | trainable params |", "|---|---:|---:|---:|---:|"]
    for config, x in r.items():
        lines.append(f"| {config} | {x['tokens_per_s']:.0f} | {x['s_per_step']:.1f} | {x['peak_rss_mb']:,.0f} | "
                     f"{x['trainable']:,} |")
    plain, ckpt = r["ddp"], r["ddp+ckpt"]
    lower = 1 - ckpt["peak_rss_mb"] / plain["peak_rss_mb"]
    slower = ckpt["s_per_step"] / plain["s_per_step"]
    lines += ["", f"- target checkpointing peak >= 40% lower: {100 * lower:.0f}% lower, {met(lower >= 0.4)}",
              f"- target checkpointing step time <= 1.4x: {slower:.2f}x, {met(slower <= 1.4)}"]
    if "ddp+lora16" in r:
        x = r["ddp+lora16"]
        lines.append(f"- LoRA r=16: {x['trainable']:,} of {plain['trainable']:,} parameters trained "
                     f"({100 * x['trainable'] / plain['trainable']:.1f}%), peak RSS {x['peak_rss_mb']:,.0f} MB vs "
                     f"{plain['peak_rss_mb']:,.0f} MB full fine-tuning")
    return lines


def trl_lines(p: dict) -> list[str]:
    r = p["result"]
    lines = ["", f"Ours vs TRL's RewardTrainer, same decoder and rows, batch {p['batch']} pairs, max length "
             f"{p['max_length']}, 1 process, {p['steps']} timed step(s) after {p['warmup']} "
             "(ours counts the real tokens of both sequences of each pair; TRL its own count of non-pad tokens):", "",
             "| trainer | settings | tokens/s | s/step | peak RSS MB |", "|---|---|---:|---:|---:|"]
    settings = {"ours fp32": "fp32, no checkpointing (our defaults)", "trl fp32": "fp32, no checkpointing",
                "ours bf16+ckpt": "bf16 autocast, checkpointing", "trl defaults": "RewardConfig defaults: bf16, "
                "gradient checkpointing, lr 1e-4"}
    for name, x in r.items():
        lines.append(f"| {name} | {settings[name]} | {x['tokens_per_s']:.0f} | {x['s_per_step']:.1f} | "
                     f"{x['peak_rss_mb']:,.0f} |")
    lines.append("")
    for ours, peer in (("ours fp32", "trl fp32"), ("ours bf16+ckpt", "trl defaults")):
        if ours not in r:
            lines.append(f"- target {ours} >= 1.5x {peer} tokens/s: not run")
            continue
        ratio = r[ours]["tokens_per_s"] / r[peer]["tokens_per_s"]
        lines.append(f"- target {ours} >= 1.5x {peer} tokens/s: {ratio:.2f}x, {met(ratio >= 1.5)}")
    return lines


def lora_lines(p: dict) -> list[str]:
    r = p["result"]
    n = r["r0"][0]["held_out"]
    se = (2 * 0.25 / n) ** 0.5
    full, adapted = (statistics.fmean(x["accuracy"] for x in r[k]) for k in ("r0", "r16"))
    lines = ["", f"LoRA r=16 vs full fine-tuning (tiny workload, random init, {r['steps']} steps x {r['batch']} pairs, "
             f"max length {r['max_length']}, AdamW lr {r['lr']} constant, fp32, seeds "
             f"{[x['seed'] for x in r['r0']]}; held-out bench pairs, our encoding):", "",
             "| training | trainable params | held-out accuracy per seed | mean |", "|---|---:|---|---:|"]
    runs = [k for k in r if k.startswith("r") and isinstance(r[k], list)]
    for key in runs:
        label = "full fine-tuning" if key.split()[0] == "r0" else f"LoRA {key.replace('r', 'r=', 1)}"
        accs = ", ".join(f"{x['accuracy']:.3f}" for x in r[key])
        lines.append(f"| {label} | {r[key][0]['trainable']:,} of {r[key][0]['total']:,} | {accs} | "
                     f"{statistics.fmean(x['accuracy'] for x in r[key]):.3f} |")
    gap = adapted - full
    lines += ["", f"- target LoRA within 2 standard errors of full fine-tuning: {gap:+.3f} on {n} pairs, 2 x SE of a "
              f"difference of two accuracies {2 * se:.3f}: {met(abs(gap) <= 2 * se)}"]
    for key in runs[2:]:  # reruns of the adapters at another lr
        gap = statistics.fmean(x["accuracy"] for x in r[key]) - full
        lines.append(f"- LoRA {key} vs full fine-tuning at lr {r['lr']}: {gap:+.3f} ({met(abs(gap) <= 2 * se)})")
    return lines


def qwen_lines(p: dict) -> list[str]:
    r = p["result"]
    lines = ["", f"Qwen2-0.5B dims ({r['params']:,} parameters, random init), 2 processes (1 thread each), batch "
             f"{r['batch']} pairs, max length {r['max_length']}, fp32; {r['available_mb']:,.0f} MB RAM available "
             f"at start:", "", "| strategy | model state per rank, computed MB | tokens/s (2 ranks) | s/step | "
             "peak RSS per rank MB |", "|---|---:|---:|---:|---:|"]
    for strategy, run in r["runs"].items():
        need = r["model_state_mb"][strategy]
        if run is None:
            lines.append(f"| {strategy} | {need:,.0f} | not run: 2 x ({need:,.0f} + {r['full_load_mb']:,.0f} full "
                         f"load) MB + activations > {r['available_mb']:,.0f} MB available | - | - |")
        else:
            lines.append(f"| {strategy} | {need:,.0f} | {run['tokens_per_s']:.0f} | {run['s_per_step']:.1f} | "
                         f"{run['peak_rss_mb']:,.0f} |")
    return lines


def section(parts: dict) -> list[str]:
    lines = header(parts)
    for name, render in (("ckpt", ckpt_lines), ("trl", trl_lines), ("lora", lora_lines), ("qwen", qwen_lines)):
        if name in parts:
            lines += render(parts[name])
    return [*lines, ""]
