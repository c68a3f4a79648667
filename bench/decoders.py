"""Decoder reward models (#26): prefix sharing vs our unshared decoder path, ours vs TRL's RewardTrainer at the
same precision, and best-of-n scoring with the prompt computed once vs the n full sequences.

    python -m bench.decoders [--dims llama-26m|smollm2-135m] [--precision fp32 [bf16]] [--sharing auto [off]]
        [--parts share trl best-of-n] [--steps 2] [--warmup 1] [--batch 8] [--grad-accum 1] [--max-length 1024]
        [--prompt-tokens 500] [--n 8] [--repeats 3] [--model DIR] [--no-record]

Model: LlamaForSequenceClassification, random init, with the BPE tokenizer bench.fsdp_scale.decoder_base trains on
the bench data; --dims smollm2-135m: SmolLM2-135M's dims (decoder_base), llama-26m: hidden 512, 8 layers, 8 heads,
intermediate 1376 (the issue's ~26M-param base; the parameter count is printed). Data: the bench's HH-shaped
conversations (bench/workloads.py: the prompt is about 74% of a pair's characters). Each trainer runs in its own
subprocess on the same (warmup + steps) x batch pairs, each step --grad-accum micro-batches of batch / grad-accum
pairs, per --precision: ours with train.precision, TRL with bf16=True for bf16:
- share: our train loop (`rewardkit.training.loop.optimize`, from a token store as the train stage) with
  train.prefix_sharing auto and/or off (--sharing; both in the same run by default). tokens-of-work/s = the real tokens of
  both full sequences of every pair per second (the same work either way); `computed` = the tokens the forwards
  really ran (shared prompts once).
- trl: bench/peers/trl_rm.py (TRL's RewardTrainer: padded, the prompt twice), pairs/s against ours shared.
- best-of-n: one prompt of --prompt-tokens tokens and n bench answers, scored by `score_sequences` (what
  RewardScorer.score(prompt, candidates) runs) as one group vs the n full sequences unshared; best of --repeats.
Then FLOPs per pair of each side, the GEMM ceiling at the model's shapes per precision and the bound on the ratio
over TRL (bench/decoders_report.py). Appends a dated section to bench/RESULTS.md unless --no-record.
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

from bench import decoders_report as report
from bench import system, workloads

SEED = 42
PEER = Path(__file__).resolve().parent / "peers" / "trl_rm.py"
LLAMA_26M = dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=8, num_attention_heads=8,
                 num_key_value_heads=8, max_position_embeddings=4096)


def decoder_model(train: Path, dims: str) -> Path:
    """The classifier directory at `dims` (built once under bench/out/models), with decoder_base's tokenizer."""
    from bench.fsdp_scale import decoder_base

    base = decoder_base(train)
    if dims == "smollm2-135m":
        return base
    out = workloads.OUT / "models" / f"{dims}-{train.stem}"
    if not (out / "config.json").exists():
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification
        tokenizer = AutoTokenizer.from_pretrained(base)
        config = LlamaConfig(**LLAMA_26M, vocab_size=len(tokenizer), num_labels=1, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
        torch.manual_seed(SEED)
        LlamaForSequenceClassification(config).save_pretrained(out)
        tokenizer.save_pretrained(out)
    return out


def count_computed(model, counts: dict) -> None:
    """A pre-hook adding each forward's computed tokens, row slots and squared row widths (padding included) to
    `counts`, and each packed pair's lengths to counts["lengths"]."""
    def hook(module, inputs):
        ids, mask = inputs[0], inputs[1]
        layout = inputs[3] if len(inputs) > 3 else None
        counts["computed"] += int((layout.group >= 0).sum()) if layout is not None else int(mask.sum())
        counts["slots"] += ids.numel()
        counts["sq_slots"] += ids.shape[0] * ids.shape[1] ** 2
        if layout is not None:
            counts["lengths"] += report.pair_lengths(layout)
    model.register_forward_pre_hook(hook)


def time_training(model_dir: str, data: str, sharing: str, steps: int, warmup: int, batch: int,
                  max_length: int, grad_accum: int = 1, precision: str = "fp32") -> dict:
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
                      warmup_ratio=0.0, checkpoint_every=0, device="cpu", precision=precision, seed=SEED,
                      prefix_sharing=sharing, grad_accum_steps=grad_accum)
    counts = {"computed": 0, "slots": 0, "sq_slots": 0, "lengths": []}
    count_computed(model, counts)
    stamps: list[tuple] = []
    with tempfile.TemporaryDirectory() as work:
        pairs = store_rows(workloads.read_jsonl(Path(data)), Path(work) / "store", tokenizer, model.hf.config,
                           max_length)
        if len(pairs) != (steps + warmup) * batch:
            raise SystemExit(f"{data}: {len(pairs)} usable pairs, expected {(steps + warmup) * batch}")
        optimize(model, pairs, cfg, torch.device("cpu"), Ranks(), tokenizer.pad_token_id, Path(work) / "ckpt",
                 on_step=lambda r: stamps.append((time.perf_counter(), r["tokens"], counts["computed"],
                                                  counts["slots"], counts["sq_slots"], len(counts["lengths"]))))
    timed = stamps[warmup - 1:]
    seconds = timed[-1][0] - timed[0][0]
    return {"impl": f"ours (prefix_sharing {sharing})", "shared": model.share_prefix,
            "pairs_per_s": steps * batch / seconds, "s_per_step": seconds / steps, "seconds": seconds,
            "tokens": sum(s[1] for s in timed[1:]), "computed": timed[-1][2] - timed[0][2],
            "slots": timed[-1][3] - timed[0][3], "sq_slots": timed[-1][4] - timed[0][4],
            "lengths": counts["lengths"][timed[0][5]:timed[-1][5]], "precision": precision,
            "threads": torch.get_num_threads()}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=("share", "trl", "best-of-n"),
                        default=["share", "trl", "best-of-n"])
    parser.add_argument("--dims", choices=("llama-26m", "smollm2-135m"), default="smollm2-135m")
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32"])
    parser.add_argument("--sharing", nargs="+", choices=("auto", "off"), default=["auto", "off"],
                        help="our train loop's prefix_sharing settings to time (default both, in the same run)")
    for flag, default in (("--steps", 2), ("--warmup", 1), ("--batch", 8), ("--max-length", 1024),
                          ("--prompt-tokens", 500), ("--n", 8), ("--repeats", 3)):
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches a step (ours and TRL alike)")
    parser.add_argument("--model", type=Path, help="a decoder classifier directory (instead of --dims)")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be at least 1")
    from transformers import AutoConfig

    train, _ = workloads.bench_data()
    model = args.model or decoder_model(train, args.dims)
    config = AutoConfig.from_pretrained(model)
    size = f"{config.num_hidden_layers} layers, hidden {config.hidden_size}, {report.params(config):,} parameters"
    print(f"model {model}: {size}\nmachine: {system.machine()}\n{system.bf16_support()}", flush=True)
    data = workloads.first_rows(train, (args.steps + args.warmup) * args.batch)
    load = system.load_1min()
    common = [str(model), str(data), "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch",
              str(args.batch), "--max-length", str(args.max_length), "--grad-accum", str(args.grad_accum)]
    me = [sys.executable, "-m", "bench.decoders"]
    results, best = {}, None
    for precision in args.precision:
        tag = "" if precision == "fp32" else f" {precision}"
        if "share" in args.parts:
            for sharing in args.sharing:
                name = f"ours {'shared' if sharing == 'auto' else 'unshared'}{tag}"
                results[name] = run([*me, "train", *common, "--sharing", sharing, "--precision", precision],
                                    name.replace(" ", "-"))
        if "trl" in args.parts:
            results[f"trl{tag}"] = run([sys.executable, str(PEER), *common, *(["--bf16"] if tag else [])],
                                       f"trl{tag}".replace(" ", "-"))
    if "best-of-n" in args.parts:
        best, _ = run([*me, "score", str(model), str(train), "--prompt-tokens", str(args.prompt_tokens), "--n",
                       str(args.n), "--repeats", str(args.repeats)], "best-of-n")
    shared = next((r for name, (r, _) in results.items() if name.startswith("ours shared")), None)
    ceilings = {}
    if shared and any(n.startswith("trl") for n in results):
        rows = round(shared["slots"] / (args.steps * args.grad_accum))  # our rows per forward
        ceilings = report.measure_ceilings(config, rows, args.precision)
        print(f"GEMM ceilings at {rows} rows: {ceilings}", flush=True)
    pairs = (args.steps + args.warmup) * args.batch
    lines = [*report.training_rows(results, args.steps), "",
             *(f"- {v}" for v in report.verdicts(results, best, args.steps, pairs, args.precision))]
    if ceilings:
        lines += ["", *report.flops_rows(config, results, ceilings, args.steps, args.batch)]
    print("\n".join(lines))
    if not args.no_record:
        system.record([f"## {datetime.date.today()}: decoder reward models, {args.model or args.dims} (#26)", "",
                       f"- command: `python -m bench.decoders {shlex.join(sys.argv[1:])}`",
                       f"- machine: {system.machine()}; {system.bf16_support()}; load {load:.2f} at start, "
                       f"{system.load_1min():.2f} at end",
                       f"- model: {size}; {args.steps} timed steps after {args.warmup} warm-up, batch {args.batch} "
                       f"pairs in {args.grad_accum} micro-batch(es), max length {args.max_length}, "
                       f"{' and '.join(args.precision)}", "", *lines, ""])


def worker() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=("train", "score"))
    p.add_argument("model")
    p.add_argument("data")
    for flag, default in (("--steps", 2), ("--warmup", 1), ("--batch", 8), ("--grad-accum", 1),
                          ("--max-length", 1024), ("--prompt-tokens", 500), ("--n", 8), ("--repeats", 3)):
        p.add_argument(flag, type=int, default=default)
    p.add_argument("--sharing", choices=("auto", "off"), default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    a = p.parse_args()
    if a.mode == "train":
        result = time_training(a.model, a.data, a.sharing, a.steps, a.warmup, a.batch, a.max_length, a.grad_accum,
                               a.precision)
    else:
        result = time_best_of_n(a.model, a.data, a.prompt_tokens, a.n, a.repeats)
    print(json.dumps(result))


if __name__ == "__main__":
    worker() if len(sys.argv) > 1 and sys.argv[1] in ("train", "score") else main()
