"""Decoder reward models at SmolLM2-135M dims (#26): prefix sharing vs our unshared decoder path, ours vs TRL's
RewardTrainer, and best-of-n scoring with the prompt computed once vs the n full sequences.

    python -m bench.decoders [--parts share trl best-of-n] [--steps 2] [--warmup 1] [--batch 8] [--grad-accum 1]
        [--max-length 1024] [--prompt-tokens 500] [--n 8] [--repeats 3] [--no-record]

Model: bench.fsdp_scale.decoder_base (LlamaForSequenceClassification at SmolLM2-135M's dims, random init, a BPE
tokenizer trained on the bench data). Data: the bench's HH-shaped conversations (bench/workloads.py: the prompt is
about 74% of a pair's characters). Each trainer runs in its own subprocess on the same (warmup + steps) x batch
pairs, fp32, each step --grad-accum micro-batches of batch / grad-accum pairs (at SmolLM2-135M dims and len 1024
a padded micro-batch of 8 pairs needs more than 24 GB):
- share: our train loop (`rewardkit.training.loop.optimize`, from a token store as the train stage) with
  train.prefix_sharing auto and off. tokens-of-work/s = the real tokens of both full sequences of every pair per
  second (the same work either way); `computed` = the tokens the forwards really ran (shared prompts once).
- trl: bench/peers/trl_rm.py (TRL's RewardTrainer: padded, the prompt twice), pairs/s against ours shared.
- best-of-n: one prompt of --prompt-tokens tokens and n bench answers, scored by `score_sequences` (what
  RewardScorer.score(prompt, candidates) runs) as one group vs the n full sequences unshared; best of --repeats.
Appends a dated section to bench/RESULTS.md unless --no-record.
"""
from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from bench import system, workloads

SEED = 42
PEER = Path(__file__).resolve().parent / "peers" / "trl_rm.py"


def count_computed(model, counts: dict) -> None:
    """A pre-hook adding each forward's computed tokens and row slots (padding included) to `counts`."""
    def hook(module, inputs):
        ids, mask = inputs[0], inputs[1]
        layout = inputs[3] if len(inputs) > 3 else None
        counts["computed"] += int((layout.group >= 0).sum()) if layout is not None else int(mask.sum())
        counts["slots"] += ids.numel()
    model.register_forward_pre_hook(hook)


def time_training(model_dir: str, data: str, sharing: str, steps: int, warmup: int, batch: int,
                  max_length: int, grad_accum: int = 1) -> dict:
    """Our train loop over exactly (warmup + steps) x batch pairs; the steps after `warmup` timed."""
    import torch

    from rewardkit.config import TrainConfig
    from rewardkit.encoding.tokenization import store_rows
    from rewardkit.modeling.model import load_base
    from rewardkit.training.distributed import Ranks
    from rewardkit.training.loop import optimize

    model, tokenizer = load_base(model_dir, "cls", SEED)
    model.share_prefix = model.share_prefix and sharing == "auto"  # as the train stage sets it
    cfg = TrainConfig(max_length=max_length, batch_size=batch, epochs=1, lr=5e-5, scheduler="constant",
                      warmup_ratio=0.0, checkpoint_every=0, device="cpu", precision="fp32", seed=SEED,
                      prefix_sharing=sharing, grad_accum_steps=grad_accum)
    counts = {"computed": 0, "slots": 0}
    count_computed(model, counts)
    stamps: list[tuple[float, int, int, int]] = []
    with tempfile.TemporaryDirectory() as work:
        pairs = store_rows(workloads.read_jsonl(Path(data)), Path(work) / "store", tokenizer, model.hf.config,
                           max_length)
        if len(pairs) != (steps + warmup) * batch:
            raise SystemExit(f"{data}: {len(pairs)} usable pairs, expected {(steps + warmup) * batch}")
        optimize(model, pairs, cfg, torch.device("cpu"), Ranks(), tokenizer.pad_token_id, Path(work) / "ckpt",
                 on_step=lambda r: stamps.append((time.perf_counter(), r["tokens"], counts["computed"],
                                                  counts["slots"])))
    timed = stamps[warmup - 1:]
    seconds = timed[-1][0] - timed[0][0]
    return {"impl": f"ours (prefix_sharing {sharing})", "shared": model.share_prefix,
            "pairs_per_s": steps * batch / seconds, "s_per_step": seconds / steps, "seconds": seconds,
            "tokens": sum(s[1] for s in timed[1:]), "computed": timed[-1][2] - timed[0][2],
            "slots": timed[-1][3] - timed[0][3], "threads": torch.get_num_threads()}


def best_of_n_sequences(tokenizer, config, rows: list[dict], prompt_tokens: int, n: int) -> list[list[int]]:
    """n encoded sequences (as the scorer encodes them) of one prompt cut to `prompt_tokens` tokens and the first
    n bench answers."""
    from rewardkit.encoding.families import input_template
    from rewardkit.encoding.templates import encode_sequences

    text = ""
    for r in rows:  # enough prompt text for the tokens asked (~4 characters a token), not the whole file
        if len(text) > 8 * prompt_tokens:
            break
        text += r["prompt"]
    prompt = tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"][:prompt_tokens])
    answers = [a for r in rows for a in (r["chosen"], r["rejected"])][:n]
    return encode_sequences(tokenizer, [prompt] * n, answers, 4096, input_template(config, tokenizer)).ids


def time_best_of_n(model_dir: str, data: str, prompt_tokens: int, n: int, repeats: int) -> dict:
    """Seconds (best of `repeats`, after one warm-up each) of scoring n candidates of one prompt: shared (one
    group, as RewardScorer.score(prompt, candidates)) and unshared (the n full sequences, padded)."""
    import torch

    from rewardkit.modeling.inference import score_sequences
    from rewardkit.modeling.model import load_base

    model, tokenizer = load_base(model_dir, "cls", SEED)
    model.eval()
    sequences = best_of_n_sequences(tokenizer, model.hf.config, workloads.read_jsonl(Path(data)), prompt_tokens, n)
    cpu, pad = torch.device("cpu"), tokenizer.pad_token_id
    out, rewards = {}, {}
    for name, share in (("shared", True), ("unshared", False)):
        model.share_prefix = share
        rewards[name] = score_sequences(model, sequences, pad, 64, cpu, groups=[list(range(n))])
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            score_sequences(model, sequences, pad, 64, cpu, groups=[list(range(n))])
            best = min(best, time.perf_counter() - start)
        out[f"{name}_s"] = best
    lengths = [len(s) for s in sequences]
    return {"impl": "best-of-n", **out, "speedup": out["unshared_s"] / out["shared_s"], "lengths": lengths,
            "max_abs_diff": float((rewards["shared"] - rewards["unshared"]).abs().max())}


def run(cmd: list[str], name: str) -> tuple[dict, float]:
    print(f"{name} ...", flush=True)
    result, rss = system.run_child(cmd, workloads.OUT / "logs" / f"decoders-{name}.log", cwd=workloads.ROOT)
    print(f"{name}: {result}", flush=True)
    return result, rss


def tokens_per_s(r: dict, steps: int) -> float:
    """Real tokens of the timed steps per second; from s_per_step, which every trainer's JSON line has."""
    return r["tokens"] / (r["s_per_step"] * steps)


def training_rows(results: dict, steps: int) -> list[str]:
    lines = ["| trainer | pairs/s | tokens-of-work/s | tokens computed / of work | row slots / of work | "
             "peak RSS MB |", "|---|---:|---:|---:|---:|---:|"]
    for name, (r, rss) in results.items():
        computed = f"{r['computed'] / r['tokens']:.2f}" if "computed" in r else "1.00 (padded)"
        slots = f"{r['slots'] / r['tokens']:.2f}" if "slots" in r else "-"
        lines.append(f"| {name} | {r['pairs_per_s']:.3f} | {tokens_per_s(r, steps):.1f} | {computed} | "
                     f"{slots} | {rss:,.0f} |")
    return lines


def verdicts(results: dict, best: dict | None, steps: int, pairs: int) -> list[str]:
    met = lambda ok: "met" if ok else "MISSED"  # noqa: E731
    out = []
    shared, plain = results.get("ours shared"), results.get("ours unshared")
    if shared and plain:
        ratio = tokens_per_s(shared[0], steps) / tokens_per_s(plain[0], steps)
        out.append(f"target prefix sharing >= 1.3x tokens-of-work/s over unshared: {ratio:.2f}x, {met(ratio >= 1.3)}")
    if shared and "trl" in results:
        trl = results["trl"][0]
        ratio = shared[0]["pairs_per_s"] / trl["pairs_per_s"]
        out.append(f"target ours >= 3x TRL pairs/s (fp32): {ratio:.2f}x, {met(ratio >= 3)} (TRL kept "
                   f"{trl['kept_pairs']} of the {pairs} pairs: it drops pairs longer than max length, ours truncates)")
    if best:
        out.append(f"target best-of-{len(best['lengths'])} shared >= 2.5x the full sequences: "
                   f"{best['shared_s']:.3f} s vs {best['unshared_s']:.3f} s = {best['speedup']:.2f}x, "
                   f"{met(best['speedup'] >= 2.5)} (sequence lengths {best['lengths']}, rewards within "
                   f"{best['max_abs_diff']:.1e})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=("share", "trl", "best-of-n"),
                        default=["share", "trl", "best-of-n"])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches a step (ours and TRL alike)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--prompt-tokens", type=int, default=500)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", type=Path, help="a decoder classifier directory (default: SmolLM2-135M dims)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1")
    from bench.fsdp_scale import decoder_base

    train, _ = workloads.bench_data()
    model = args.model or decoder_base(train)
    data = workloads.first_rows(train, (args.steps + args.warmup) * args.batch)
    load = system.load_1min()
    common = [str(model), str(data), "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch",
              str(args.batch), "--max-length", str(args.max_length), "--grad-accum", str(args.grad_accum)]
    me = [sys.executable, "-m", "bench.decoders"]
    results, best = {}, None
    if "share" in args.parts:
        for sharing, name in (("auto", "ours shared"), ("off", "ours unshared")):
            results[name] = run([*me, "train", *common, "--sharing", sharing], name.replace(" ", "-"))
    if "trl" in args.parts:
        results["trl"] = run([sys.executable, str(PEER), *common], "trl")
    if "best-of-n" in args.parts:
        best, _ = run([*me, "score", str(model), str(train), "--prompt-tokens", str(args.prompt_tokens), "--n",
                       str(args.n), "--repeats", str(args.repeats)], "best-of-n")
    lines = [*training_rows(results, args.steps), "",
             *(f"- {v}" for v in verdicts(results, best, args.steps, (args.steps + args.warmup) * args.batch))]
    print("\n".join(lines))
    if not args.no_record:
        system.record([f"## {datetime.date.today()}: decoder reward models, SmolLM2-135M dims (#26)", "",
                       f"- command: `python -m bench.decoders {shlex.join(sys.argv[1:])}`",
                       f"- machine: {system.machine()}; load {load:.2f} at start, {system.load_1min():.2f} at end",
                       f"- {args.steps} timed steps after {args.warmup} warm-up, batch {args.batch} pairs in "
                       f"{args.grad_accum} micro-batch(es), max length {args.max_length}, fp32", "", *lines, ""])


def worker() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("train", "score"))
    p.add_argument("model")
    p.add_argument("data")
    for flag, default in (("--steps", 2), ("--warmup", 1), ("--batch", 8), ("--grad-accum", 1),
                          ("--max-length", 1024), ("--prompt-tokens", 500), ("--n", 8), ("--repeats", 3)):
        p.add_argument(flag, type=int, default=default)
    p.add_argument("--sharing", choices=("auto", "off"), default="auto")
    a = p.parse_args()
    if a.mode == "train":
        result = time_training(a.model, a.data, a.sharing, a.steps, a.warmup, a.batch, a.max_length, a.grad_accum)
    else:
        result = time_best_of_n(a.model, a.data, a.prompt_tokens, a.n, a.repeats)
    print(json.dumps(result))


if __name__ == "__main__":
    worker() if len(sys.argv) > 1 and sys.argv[1] in ("train", "score") else main()
