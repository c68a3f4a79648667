"""A summary of a pipeline run that a person can read in a terminal (at most 100 columns): held-out accuracy
against the longer-wins baseline, loss, ECE, length bias, the largest per-group gaps, extra sets, truncation and
rejection counts, and where the plots and the full numbers are."""
from __future__ import annotations

import json
from pathlib import Path

WIDTH = 100
GAPS = 3  # groups shown per breakdown: those furthest below the overall accuracy


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _gaps(metrics: dict, indent: str) -> list[str]:
    lines = []
    for kind in ("by_source", "by_subset"):
        groups = metrics.get(kind) or {}
        if len(groups) < 2:
            continue
        worst = sorted(groups.items(), key=lambda g: g[1]["accuracy"])[:GAPS]
        shown = ", ".join(f"{name} {v['accuracy']:.3f} ({v['accuracy'] - metrics['accuracy']:+.3f}, {v['pairs']})"
                          for name, v in worst)
        lines.append(f"{indent}lowest {kind.removeprefix('by_')}s: {shown}")
    if metrics.get("rewardbench"):
        lines.append(indent + "RewardBench: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics["rewardbench"].items()))
    return lines


def summary_lines(metrics_dir: Path) -> list[str]:
    """The summary, one string a line, each at most WIDTH characters (long lists are cut with '...')."""
    validate, split = _load(metrics_dir / "validate.json"), _load(metrics_dir / "split.json")
    train, evaluation = _load(metrics_dir / "train" / "metrics.json"), _load(metrics_dir / "eval.json")
    lines = []
    if validate:
        lines.append(f"data: {validate['lines_read']:,} rows read, {validate['kept']:,} kept, "
                     f"{validate['rejected']:,} rejected ({validate.get('format', 'explicit')})"
                     + (" - see data/rejects.jsonl" if validate["rejected"] else ""))
    if split:
        lines.append(f"split: {split['train_pairs']:,} train / {split['eval_pairs']:,} eval pairs, "
                     f"{split['prompts_on_both_sides']} prompts on both sides")
    if train:
        lines.append(f"train: {train['step']} steps, {train['pairs_used']:,} pairs; truncated: prompt "
                     f"{train['prompt_truncated']:,}, response {train['response_truncated']:,}; identical after "
                     f"truncation {train['identical_after_truncation']:,}")
    if evaluation:
        lines += [f"held-out ({evaluation['pairs']:,} pairs): accuracy {evaluation['accuracy']:.3f} vs "
                  f"longer-wins baseline {evaluation['baseline_longer_wins_accuracy']:.3f}; loss "
                  f"{evaluation['loss']:.3f}; ECE {evaluation['ece']:.3f}",
                  f"  length bias: {_acc(evaluation.get('accuracy_chosen_longer'))} when chosen is longer "
                  f"({evaluation.get('pairs_chosen_longer', 0)}), {_acc(evaluation.get('accuracy_chosen_shorter'))} "
                  f"when shorter ({evaluation.get('pairs_chosen_shorter', 0)})"
                  + (f"; Spearman(reward, length) {_acc(bias.get('spearman_reward_length'))}"
                     if (bias := evaluation.get("length_bias")) else ""), *_gaps(evaluation, "  ")]
        for name, extra in (evaluation.get("extra_sets") or {}).items():
            lines.append(f"{name} ({extra['pairs']:,} pairs): accuracy {extra['accuracy']:.3f} vs longer-wins "
                         f"{extra['baseline_longer_wins_accuracy']:.3f}; loss {extra['loss']:.3f}")
            lines += _gaps(extra, "  ") + _benchmark(extra)
    if not lines:
        return [f"no metrics in {metrics_dir}: run `dvc repro` (or `make demo`) first"]
    lines += ["plots: `dvc plots show`, then open dvc_plots/index.html",
              "every number: `dvc metrics show` (or `dvc metrics show metrics/eval.json`)"]
    return [line if len(line) <= WIDTH else line[:WIDTH - 3] + "..." for line in lines]


def _benchmark(extra: dict) -> list[str]:
    """The benchmark's own numbers of an extra set scored by RM-Bench's or RewardBench 2's rule."""
    if extra.get("scoring") == "rmbench":
        b = extra["rmbench"]
        return [f"  RM-Bench: hard {b['hard']:.3f}, normal {b['normal']:.3f}, easy {b['easy']:.3f}, "
                f"average {b['average']:.3f}"]
    if extra.get("scoring") == "rewardbench2":
        b = extra["rewardbench2"]
        return ["  RewardBench 2: Score " + f"{b['Score']:.3f} (" + ", ".join(
            f"{k} {v['score']:.3f}" for k, v in b.items() if k != "Score") + ")"]
    return []


def _acc(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
