"""Reward-model training speed: ours vs TRL's RewardTrainer vs the original loop, on the same hardware.

    python -m bench [--workloads tiny small] [--steps N] [--warmup N] [--skip-peers] [--quick] [--no-record]

In one run, back to back, on the same model directory, data and settings (batch 10 pairs, max length 512,
AdamW lr 5e-5, fp32), each in its own subprocess: our trainer (bench/ours.py through rewardkit.optimization.optimize),
TRL's RewardTrainer (bench/peers/trl_rm.py) and the original loop (bench/peers/original_loop.py); then our
evaluator (rewardkit.evaluation.score_pairs), and a no-op `dvc repro` (bench/repro.py). Workloads: DeBERTa-v3
architecture at scratch-tiny dims (hidden 128, 2 layers) and deberta-v3-small dims (hidden 768, 6 layers), random
init, 8k SentencePiece vocabulary trained on the bench conversations (bench/workloads.py). Every trainer is given
the same (warmup + steps) x batch pairs: ours and the original loop use them all (truncating), TRL drops the pairs
longer than max_length and cycles over the rest (its kept count is reported).

Columns: pairs/s and tokens/s (real, non-pad tokens) over the timed steps; peak RSS of the trainer's process
(wait4); estimated achieved GFLOP/s = 6 x non-embedding params x tokens/s for training (2 x for evaluation), and
its share of the fp32 matmul peak measured here (2048^2 matmul, 2 threads, best of 5). The estimate leaves out
attention-score FLOPs, so it is a floor. Appends a dated section to bench/RESULTS.md unless --no-record.
TRL is a bench-only dependency: `pip install -r bench/requirements.txt -c requirements.txt`.
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

from bench import system, workloads
from bench.repro import TARGET_S, time_noop_repro

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "RESULTS.md"
PEERS = {"trl": BENCH / "peers" / "trl_rm.py", "original": BENCH / "peers" / "original_loop.py"}
# per workload: (timed steps, warm-up steps, eval pairs); small dims take ~10-60 s a step on 2 cores
DEFAULTS = {"tiny": (20, 2, 200), "small": (4, 1, 40)}
QUICK = (1, 1, 4)
BATCH, MAX_LENGTH, EVAL_BATCH = 10, 512, 64  # EVAL_BATCH: pairs per inference batch, evaluate.batch_size
HEADER = "| workload | trainer | pairs/s | tokens/s | peak RSS MB | est. GFLOP/s | % of fp32 peak | pairs kept/given |"


def non_embedding_params(model_dir: Path) -> int:
    """Parameters outside the token and relative-position embeddings (the 6ND convention), counted on `meta`."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(model_dir))
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def bench_workload(name: str, args: argparse.Namespace, train: Path, held_out: Path) -> list[dict]:
    steps, warmup, eval_pairs = QUICK if args.quick else DEFAULTS[name]
    steps, warmup = args.steps or steps, args.warmup or warmup
    model = workloads.model_dir(name, train)
    data = workloads.first_rows(train, (steps + warmup) * BATCH)
    eval_data = workloads.first_rows(held_out, eval_pairs)
    common = [str(model), str(data), "--steps", str(steps), "--warmup", str(warmup), "--batch", str(BATCH),
              "--max-length", str(MAX_LENGTH)]
    runs = [("ours", [sys.executable, "-m", "bench.ours", "train", *common])]
    if args.compile:
        runs.append(("ours (compile)", [sys.executable, "-m", "bench.ours", "train", *common, "--compile"]))
    if not args.skip_peers:
        runs += [(peer, [sys.executable, str(PEERS[peer]), *common]) for peer in ("trl", "original")]
    runs.append(("ours eval", [sys.executable, "-m", "bench.ours", "eval", str(model), str(eval_data),
                               "--batch", str(EVAL_BATCH), "--max-length", str(MAX_LENGTH)]))
    n_params = non_embedding_params(model)
    rows = []
    for impl, cmd in runs:
        print(f"[{name}] {impl} ...", flush=True)
        slug = impl.replace(" ", "-").replace("(", "").replace(")", "")
        result, rss = system.run_child(cmd, workloads.OUT / "logs" / f"{name}-{slug}.log", cwd=workloads.ROOT)
        seconds = result.get("seconds") or steps * result["s_per_step"]
        tokens_s = result["tokens"] / seconds
        flops_per_token = (2 if impl == "ours eval" else 6) * n_params
        rows.append({"workload": name, "impl": impl, "pairs_s": result["pairs_per_s"], "tokens_s": tokens_s,
                     "rss_mb": rss, "gflops": flops_per_token * tokens_s / 1e9,
                     "kept": result.get("kept_pairs", eval_pairs if impl == "ours eval" else len(
                         workloads.read_jsonl(data))), "given": eval_pairs if impl == "ours eval" else
                     (steps + warmup) * BATCH, "steps": steps, "warmup": warmup, "params": n_params})
        print(f"[{name}] {impl}: {result}", flush=True)
    return rows


def table(rows: list[dict], peak: float) -> str:
    out = [HEADER, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['workload']} | {r['impl']} | {r['pairs_s']:.2f} | {r['tokens_s']:,.0f} | {r['rss_mb']:,.0f} "
                   f"| {r['gflops']:.1f} | {100 * r['gflops'] / peak:.0f}% | {r['kept']}/{r['given']} |")
    return "\n".join(out)


def verdicts(rows: list[dict], peak: float, repro: dict | None) -> list[str]:
    """Ratios and each target met or missed, as bullet lines."""
    out = []
    for name in dict.fromkeys(r["workload"] for r in rows):
        by = {r["impl"]: r for r in rows if r["workload"] == name}
        ours = by["ours"]
        for peer in ("trl", "original"):
            if peer in by:
                out.append(f"{name}: ours/{peer} = {ours['pairs_s'] / by[peer]['pairs_s']:.2f}x pairs/s, "
                           f"{ours['tokens_s'] / by[peer]['tokens_s']:.2f}x tokens/s")
        if name == "tiny":
            for peer, want in (("trl", 3), ("original", 5)):
                if peer in by:
                    ratio = ours["pairs_s"] / by[peer]["pairs_s"]
                    out.append(f"target tiny ours >= {want}x {peer} pairs/s: {ratio:.2f}x, "
                               + ("met" if ratio >= want else "MISSED"))
        if name == "small":
            share = ours["gflops"] / peak
            out.append(f"target small >= 60% of fp32 matmul peak: {100 * share:.0f}%, "
                       + ("met" if share >= 0.6 else "MISSED"))
            if "original" in by:
                half = ours["rss_mb"] <= by["original"]["rss_mb"] / 2
                out.append(f"target small peak RSS <= half the original's: {ours['rss_mb']:,.0f} vs "
                           f"{by['original']['rss_mb']:,.0f} MB, " + ("met" if half else "MISSED"))
        ratio = by["ours eval"]["pairs_s"] / ours["pairs_s"]
        out.append(f"target {name} evaluation >= 3x training pairs/s: {ratio:.1f}x, " + ("met" if ratio >= 3 else
                                                                                           "MISSED"))
    if repro is not None:
        out.append(f"target no-op `dvc repro` <= {TARGET_S:.0f} s: {repro['noop_s']:.2f} s (first full run "
                   f"{repro['first_s']:.0f} s), " + ("met" if repro["noop_s"] <= TARGET_S and repro["up_to_date"]
                                                      else "MISSED"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=sorted(workloads.WORKLOADS), default=["tiny", "small"])
    parser.add_argument("--steps", type=int, help="timed steps (default: 20 tiny, 4 small)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 2 tiny, 1 small)")
    parser.add_argument("--skip-peers", action="store_true", help="time ours only (TRL not needed)")
    parser.add_argument("--skip-repro", action="store_true", help="do not time the no-op dvc repro")
    parser.add_argument("--compile", action="store_true", help="also time ours with train.compile=true")
    parser.add_argument("--quick", action="store_true", help="smoke test: small data, 2 steps; numbers not comparable")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--max-load", type=float, default=0.7, help="wait (up to 10 min) while the 1-min load "
                                                                      "is above this; 0 = do not wait")
    args = parser.parse_args()
    if (args.steps is not None and args.steps < 1) or (args.warmup is not None and args.warmup < 1):
        parser.error("--steps and --warmup must be at least 1")
    load_before = system.wait_for_quiet(args.max_load, 600) if args.max_load and not args.quick else system.load_1min()
    peak = system.matmul_peak_gflops()
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s (2048^2, 2 threads); load average {load_before:.2f}", flush=True)
    train, held_out = workloads.bench_data(*((60, 20) if args.quick else ()))
    rows = [row for name in args.workloads for row in bench_workload(name, args, train, held_out)]
    repro = None if args.skip_repro else time_noop_repro(workloads.OUT / "repro" / "project", train)
    load_after = system.load_1min()
    command = "python -m bench " + shlex.join(sys.argv[1:])
    lines = [table(rows, peak), "", *(f"- {v}" for v in verdicts(rows, peak, repro))]
    print("\n" + "\n".join(lines))
    if args.no_record:
        return
    tiny_dims = "; ".join(f"{r['workload']}: {r['params'] / 1e6:.2f}M non-embedding params, {r['steps']} timed "
                          f"steps after {r['warmup']} warm-up" for r in rows if r["impl"] == "ours")
    section = [f"## {datetime.date.today().isoformat()}: reward-model training speed (python -m bench)", "",
               f"- machine: {system.machine()}", f"- command: `{command}`",
               f"- load average (1 min): {load_before:.2f} before, {load_after:.2f} after; fp32 matmul peak "
               f"{peak:.1f} GFLOP/s (2048^2, 2 threads, best of 5)",
               f"- batch {BATCH} pairs, max length {MAX_LENGTH}, fp32, AdamW lr 5e-5; {tiny_dims}; evaluation batch "
               f"{EVAL_BATCH} pairs", "", *lines, ""]
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n")
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write("\n" + "\n".join(section))


if __name__ == "__main__":
    main()
