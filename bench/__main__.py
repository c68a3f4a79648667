"""Reward-model training speed: ours vs TRL's RewardTrainer vs the original loop, on the same hardware.

    python -m bench [--workloads tiny small minilm] [--steps N] [--warmup N] [--skip-peers | --peers trl original]
        [--precisions fp32 bf16] [--quick] [--no-record]

In one run, back to back, on the same model directory, data and settings (batch 10 pairs, max length 512, AdamW lr
5e-5, fp32), each in its own subprocess: our trainer (bench/ours.py through rewardkit.training.loop.optimize), TRL's
RewardTrainer (bench/peers/trl_rm.py) and the original loop (bench/peers/original_loop.py); then our evaluator
(rewardkit.evaluation.job.score_pairs), and a no-op `dvc repro` (bench/repro.py). Workloads (bench/workloads.py),
random init, tokenizers trained on the bench conversations: DeBERTa-v3 architecture at scratch-tiny dims (hidden 128,
2 layers) and deberta-v3-small dims (hidden 768, 6 layers) with an 8k SentencePiece vocabulary, and BERT architecture
at MiniLM-L6 dims (hidden 384, 6 layers, 12 heads) with WordPiece (minilm; TRL is given the SEP token as EOS, which
such tokenizers lack). Every trainer is given the same (warmup + steps) x batch pairs: ours and the original loop use
them all (truncating), TRL drops the pairs longer than max_length and cycles over the rest (its kept count is
reported).

Columns: pairs/s and tokens/s (real, non-pad tokens) over the timed steps; peak RSS of the trainer's process
(wait4); estimated achieved GFLOP/s = model FLOPs over time: 6 x non-embedding params x tokens for training (2 x for
evaluation) plus attention (`system.attention_flops`, from each trainer's real sequence lengths); and its share of
`--precisions fp32 bf16` runs every trainer and the evaluator in each (ours train.precision/evaluate.precision,
TRL `bf16=True`) and measures each ceiling in each dtype; the bf16 rows are read against the bf16 ceiling. Two
ceilings measured in the same run: the model's own matmuls at the workload's rows per step in our thread
layout (`system.model_gemm_peak` / `concurrent_gemm_peak`: the one the targets use) and, for continuity with earlier
runs, one 2048^2 fp32 matmul on 2 threads. Appends a dated section to bench/RESULTS.md unless --no-record.
TRL is a bench-only dependency: `pip install -r bench/requirements.txt -c requirements.txt`.
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

from bench import system, workloads
from bench.precision import met, precision_verdicts
from bench.repro import TARGET_S, time_noop_repro

BENCH = Path(__file__).resolve().parent
PEERS = {"trl": BENCH / "peers" / "trl_rm.py", "original": BENCH / "peers" / "original_loop.py"}
# per workload: (timed steps, warm-up steps, eval pairs); small dims take ~10-60 s a step on 2 cores
DEFAULTS = {"tiny": (20, 2, 200), "small": (4, 1, 40), "minilm": (8, 1, 100)}
QUICK = (1, 1, 4)
BATCH, MAX_LENGTH, EVAL_BATCH = 10, 512, 64  # EVAL_BATCH: pairs per inference batch, evaluate.batch_size
HEADER = ("| workload | trainer | pairs/s | tokens/s | peak RSS MB | est. GFLOP/s | % of model-GEMM peak "
          "| % of 2048² peak | pairs kept/given |")
# the speed targets against TRL: (workload, measure, ratio)
TRL_TARGETS = {"tiny": ("pairs_s", 3), "small": ("tokens_s", 3), "minilm": ("pairs_s", 3)}


def model_config(model_dir: Path):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(model_dir)


def non_embedding_params(config) -> int:
    """Parameters outside the token, position and relative-position embeddings (the 6ND convention), on `meta`."""
    import torch
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(config)
    return sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)


def measure_ceilings(config, train_rows: int, eval_rows: int, repeats: int, precision: str = "fp32") -> dict:
    """GFLOP/s of one layer's matmuls at the workload's rows, in `precision`'s dtype: training (forward +
    backward, 2 threads) and CPU scoring (forward, one single-thread worker per core, side by side)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    hidden, inter = config.hidden_size, config.intermediate_size
    return {"train": system.model_gemm_peak(system.layer_gemms(hidden, inter, train_rows), True, 2, repeats,
                                            dtype=dtype),
            "eval": system.concurrent_gemm_peak(system.layer_gemms(hidden, inter, eval_rows), 2, repeats, dtype),
            "train_rows": train_rows, "eval_rows": eval_rows}


def labelled(impl: str, precision: str) -> str:
    """The row's trainer name: fp32 rows keep the plain names (continuity), bf16 ones say so."""
    return impl if precision == "fp32" else f"{impl} bf16"


def bench_workload(name: str, args: argparse.Namespace, train: Path, held_out: Path) -> tuple[list[dict], dict]:
    steps, warmup, eval_pairs = QUICK if args.quick else DEFAULTS[name]
    steps, warmup = args.steps or steps, args.warmup or warmup
    model = workloads.model_dir(name, train)
    data = workloads.first_rows(train, (steps + warmup) * BATCH)
    eval_data = workloads.first_rows(held_out, eval_pairs)
    common = [str(model), str(data), "--steps", str(steps), "--warmup", str(warmup), "--batch", str(BATCH),
              "--max-length", str(MAX_LENGTH)]
    runs = []
    for p in args.precisions:
        ours = [sys.executable, "-m", "bench.ours", "train", *common, "--precision", p]
        runs.append((labelled("ours", p), p, ours))
        if args.compile:
            runs.append((labelled("ours (compile)", p), p, [*ours, "--compile"]))
        if not args.skip_peers:  # the original loop has no bf16 mode: fp32 only
            runs += [(labelled(peer, p), p, [sys.executable, str(PEERS[peer]), *common, *(["--bf16"] if p == "bf16"
                      else [])]) for peer in args.peers if p == "fp32" or peer == "trl"]
        runs.append((labelled("ours eval", p), p, [sys.executable, "-m", "bench.ours", "eval", str(model),
                     str(eval_data), "--batch", str(EVAL_BATCH), "--max-length", str(MAX_LENGTH), "--precision", p]))
    config = model_config(model)
    n_params = non_embedding_params(config)
    rows, results = [], {}
    for impl, precision, cmd in runs:
        print(f"[{name}] {impl} ...", flush=True)
        slug = impl.replace(" ", "-").replace("(", "").replace(")", "")
        result, rss = system.run_child(cmd, workloads.OUT / "logs" / f"{name}-{slug}.log", cwd=workloads.ROOT)
        results[impl] = result
        seconds = result.get("seconds") or steps * result["s_per_step"]
        training = not impl.startswith("ours eval")
        flops = ((6 if training else 2) * n_params * result["tokens"]
                 + system.attention_flops(config, result.get("sq_tokens", 0), training))
        rows.append({"workload": name, "impl": impl, "pairs_s": result["pairs_per_s"],
                     "tokens_s": result["tokens"] / seconds, "rss_mb": rss, "gflops": flops / seconds / 1e9,
                     "precision": precision,
                     "layout": "train" if training else "eval", "eos": result.get("eos_from_sep"),
                     "kept": result.get("kept_pairs", eval_pairs if not training else len(workloads.read_jsonl(data))),
                     "given": eval_pairs if not training else (steps + warmup) * BATCH, "steps": steps,
                     "warmup": warmup, "params": n_params, "vocab": config.vocab_size})
        print(f"[{name}] {impl}: {result}", flush=True)
    eval_result = results[labelled("ours eval", args.precisions[0])]
    train_rows = round(results[labelled("ours", args.precisions[0])]["tokens"] / steps)
    eval_rows = round(eval_result["tokens"] / eval_result.get("batches", 1))
    ceilings = {p: measure_ceilings(config, train_rows, eval_rows, 2 if args.quick else 5, p) for p in args.precisions}
    print(f"[{name}] model-GEMM ceilings: {ceilings}", flush=True)
    return rows, ceilings


def table(rows: list[dict], ceilings: dict, old_peak: float) -> str:
    out = [HEADER, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        peak = ceilings[r["workload"]][r["precision"]][r["layout"]]
        out.append(f"| {r['workload']} | {r['impl']} | {r['pairs_s']:.2f} | {r['tokens_s']:,.0f} | {r['rss_mb']:,.0f} "
                   f"| {r['gflops']:.1f} | {100 * r['gflops'] / peak:.0f}% | {100 * r['gflops'] / old_peak:.0f}% "
                   f"| {r['kept']}/{r['given']} |")
    return "\n".join(out)


def verdicts(rows: list[dict], ceilings: dict, repro: dict | None) -> list[str]:
    """Ratios and each target met or missed, as bullet lines."""
    out = []
    for name in dict.fromkeys(r["workload"] for r in rows):
        by = {r["impl"]: r for r in rows if r["workload"] == name}
        ours = by["ours"]
        for peer in ("trl", "original"):
            if peer in by:
                out.append(f"{name}: ours/{peer} = {ours['pairs_s'] / by[peer]['pairs_s']:.2f}x pairs/s, "
                           f"{ours['tokens_s'] / by[peer]['tokens_s']:.2f}x tokens/s")
        if "trl" in by and name in TRL_TARGETS:
            measure, want = TRL_TARGETS[name]
            ratio = ours[measure] / by["trl"][measure]
            unit = measure.replace("_s", "/s")
            out.append(f"target {name} ours >= {want}x trl {unit}: {ratio:.2f}x, {met(ratio >= want)}")
        if name == "tiny" and "original" in by:
            ratio = ours["pairs_s"] / by["original"]["pairs_s"]
            out.append(f"target tiny ours >= 5x original pairs/s: {ratio:.2f}x, {met(ratio >= 5)}")
        if name == "small":
            share = ours["gflops"] / ceilings[name]["fp32"]["train"]
            out.append(f"target small >= 60% of the model-GEMM peak: {100 * share:.0f}%, {met(share >= 0.6)}")
            if "original" in by:
                half = ours["rss_mb"] <= by["original"]["rss_mb"] / 2
                out.append(f"target small peak RSS <= half the original's: {ours['rss_mb']:,.0f} vs "
                           f"{by['original']['rss_mb']:,.0f} MB, {met(half)}")
        ratio = by["ours eval"]["pairs_s"] / ours["pairs_s"]
        out.append(f"target {name} evaluation >= 3x training pairs/s: {ratio:.1f}x, {met(ratio >= 3)}")
        if by.get("trl", {}).get("eos"):
            out.append(f"{name}: the tokenizer has no EOS token: TRL was given its SEP token {by['trl']['eos']} as "
                       "EOS (it appends one to every text); the original loop needs none")
    out += precision_verdicts(rows, ceilings)
    if repro is not None:
        out.append(f"target no-op `dvc repro` <= {TARGET_S:.0f} s: {repro['noop_s']:.2f} s (first full run "
                   f"{repro['first_s']:.0f} s), " + met(repro["noop_s"] <= TARGET_S and repro["up_to_date"]))
    return out


def ceiling_lines(ceilings: dict, old_peak: float) -> list[str]:
    lines = [f"fp32 matmul peak, 2048^2 on 2 threads (for continuity): {old_peak:.1f} GFLOP/s", system.bf16_support()]
    for name, c in ((f"{w} {p}", c) for w, by in ceilings.items() for p, c in by.items()):
        lines.append(f"{name} model-GEMM ceiling (one layer's q/k/v, output and feed-forward matmuls, best "                     f"of repeats): training {c['train']:.1f} GFLOP/s (forward + backward at {c['train_rows']:,} "
                     f"rows, 2 threads); scoring {c['eval']:.1f} GFLOP/s (forward at {c['eval_rows']:,} rows, 2 "
                     "single-thread workers side by side)")
    return lines


def vocabulary(row: dict) -> str:
    asked = workloads.VOCAB_SIZES[row["workload"]]
    if row["vocab"] >= asked:
        return f"vocabulary {row['vocab']:,}"
    return f"vocabulary {row['vocab']:,} (asked {asked:,}: all the pieces the trainer found in the bench texts)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=sorted(workloads.WORKLOADS),
                        default=["tiny", "small", "minilm"])
    parser.add_argument("--steps", type=int, help="timed steps (default: 20 tiny, 4 small, 8 minilm)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default: 2 tiny, 1 small, 1 minilm)")
    parser.add_argument("--skip-peers", action="store_true", help="time ours only (TRL not needed)")
    parser.add_argument("--peers", nargs="+", choices=sorted(PEERS), default=["trl", "original"],
                        help="which peers to time (default: both)")
    parser.add_argument("--skip-repro", action="store_true", help="do not time the no-op dvc repro")
    parser.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=["fp32"],
                        help="run every trainer in each (default fp32; the bf16 rows need fp32 as well)")
    parser.add_argument("--compile", action="store_true", help="also time ours with train.compile=true")
    parser.add_argument("--quick", action="store_true", help="smoke test: small data, 2 steps; numbers not comparable")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--max-load", type=float, default=0.7, help="wait (up to 10 min) while the 1-min load "
                                                                      "is above this; 0 = do not wait")
    args = parser.parse_args()
    if (args.steps is not None and args.steps < 1) or (args.warmup is not None and args.warmup < 1):
        parser.error("--steps and --warmup must be at least 1")
    if args.precisions[0] != "fp32":
        parser.error("--precisions: fp32 comes first (the bf16 rows are read against the fp32 ones)")
    load_before = system.wait_for_quiet(args.max_load, 600) if args.max_load and not args.quick else system.load_1min()
    old_peak = system.matmul_peak_gflops()
    print(f"fp32 matmul peak: {old_peak:.1f} GFLOP/s (2048^2, 2 threads); load average {load_before:.2f}", flush=True)
    train, held_out = workloads.bench_data(*((60, 20) if args.quick else ()))
    rows, ceilings = [], {}
    for name in args.workloads:
        rows_, ceilings[name] = bench_workload(name, args, train, held_out)
        rows += rows_
    repro = None if args.skip_repro else time_noop_repro(workloads.OUT / "repro" / "project", train)
    load_after = system.load_1min()
    command = "python -m bench " + shlex.join(sys.argv[1:])
    lines = [*ceiling_lines(ceilings, old_peak), "", table(rows, ceilings, old_peak), "",
             *(f"- {v}" for v in verdicts(rows, ceilings, repro))]
    print("\n" + "\n".join(lines))
    if args.no_record:
        return
    dims = "; ".join(f"{r['workload']}: {r['params'] / 1e6:.2f}M non-embedding params, {vocabulary(r)}, "
                     f"{r['steps']} timed steps after {r['warmup']} warm-up" for r in rows if r["impl"] == "ours")
    section = [f"## {datetime.date.today().isoformat()}: reward-model training speed (python -m bench)", "",
               f"- machine: {system.machine()}", f"- command: `{command}`",
               f"- load average (1 min): {load_before:.2f} before, {load_after:.2f} after",
               f"- batch {BATCH} pairs, max length {MAX_LENGTH}, {' and '.join(args.precisions)}, AdamW lr 5e-5; {dims}; evaluation batch "
               f"{EVAL_BATCH} pairs", *(f"- {line}" for line in ceiling_lines(ceilings, old_peak)), "",
               table(rows, ceilings, old_peak), "", *(f"- {v}" for v in verdicts(rows, ceilings, repro)), ""]
    system.record(section)


if __name__ == "__main__":
    main()
