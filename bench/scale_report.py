"""The RESULTS.md section of bench.scale_targets: its saved parts as tables, each #25 target with its verdict."""
from __future__ import annotations

import statistics

from bench import system
from bench.scale_targets import RUN_MARGIN_MB


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


TITLES = {"ckpt": "checkpointing at length 1024", "trl": "ours vs TRL", "lora": "LoRA quality",
          "qwen": "Qwen2-0.5B dims with fsdp"}


def header(parts: dict) -> list[str]:
    """The section's title names only the parts it holds; one line per part with its command and loads."""
    first = next(iter(parts.values()))
    lines = [f"## {first['date']}: #25 targets: {', '.join(TITLES[name] for name in parts)} "
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
        lines.append(f"- target {ours} >= 1.5x {peer} tokens/s: {ratio:.2f}x, {met(ratio >= 1.5)}; peak RSS "
                     f"{r[ours]['peak_rss_mb']:,.0f} vs {r[peer]['peak_rss_mb']:,.0f} MB "
                     f"({r[ours]['peak_rss_mb'] / r[peer]['peak_rss_mb']:.2f}x)")
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


def per_rank(run: dict, figure) -> str:
    """`figure(rank)` of each rank of a run, "a / b"; "-" for a run saved without its ranks."""
    return " / ".join(f"{figure(x):,.0f}" for x in run["ranks"]) if "ranks" in run else "-"


def live_state_mb(rank: dict) -> float:
    """What this rank's parameters, gradients (before the first step) and AdamW state hold, read from the tensors."""
    return rank["params_mb"] + rank["grads_mb"] + rank["optimizer_mb"]


def qwen_lines(p: dict) -> list[str]:
    r = p["result"]
    lines = ["", f"Qwen2-0.5B dims ({r['params']:,} parameters, random init), 2 processes (1 thread each), batch "
             f"{r['batch']} pairs, max length {r['max_length']}, fp32; {r['available_mb']:,.0f} MB RAM available "
             "at start. Per rank: the model state bench.memory_plan computes; the same read from the live tensors "
             "(params + grads + AdamW); RSS after step 1 - before load (gradients freed by then); the peak:", "",
             "| strategy | model state per rank, computed MB | params + grads + AdamW per rank, live MB | RSS after "
             "step 1 - before load, per rank MB | tokens/s (2 ranks) | s/step | peak RSS per rank MB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for strategy, run in r["runs"].items():
        need = r["model_state_mb"][strategy]
        if run is None:
            total = 2 * (need + r["full_load_mb"]) + RUN_MARGIN_MB
            lines.append(f"| {strategy} | {need:,.0f} | not run: 2 x ({need:,.0f} + {r['full_load_mb']:,.0f} full "
                         f"load) + {RUN_MARGIN_MB:,} activations and baseline = {total:,.0f} MB > "
                         f"{r['available_mb']:,.0f} MB available | - | - | - | - |")
        else:
            lines.append(f"| {strategy} | {need:,.0f} | {per_rank(run, live_state_mb)} | "
                         f"{per_rank(run, lambda x: x['rss_after_step1_mb'] - x['rss_before_mb'])} | "
                         f"{run['tokens_per_s']:.1f} | {run['s_per_step']:.1f} | "
                         f"{per_rank(run, lambda x: x['peak_rss_mb'])} |")
    fsdp, ddp = r["runs"].get("fsdp"), r["runs"].get("ddp")
    if fsdp and "ranks" in fsdp:
        part = max(live_state_mb(x) for x in fsdp["ranks"])
        ddp_part = max(live_state_mb(x) for x in ddp["ranks"]) if ddp and "ranks" in ddp else None
        against = "ddp measured" if ddp_part else "ddp computed (not run)"
        ratio = part / (ddp_part or r["model_state_mb"]["ddp"])
        lines += ["", f"- target fsdp model+grads+AdamW per rank <= 0.6x ddp's: {part:,.0f} MB live vs "
                  f"{ddp_part or r['model_state_mb']['ddp']:,.0f} MB {against}: {ratio:.2f}x, {met(ratio <= 0.6)}",
                  f"- fsdp live model state vs bench.memory_plan's: {part:,.0f} vs {r['model_state_mb']['fsdp']:,.0f}"
                  " MB computed (which adds the unsharded layers and root gathered while they run)"]
    return lines


def section(parts: dict) -> list[str]:
    lines = header(parts)
    for name, render in (("ckpt", ckpt_lines), ("trl", trl_lines), ("lora", lora_lines), ("qwen", qwen_lines)):
        if name in parts:
            lines += render(parts[name])
    return [*lines, ""]
