"""No loss of quality: held-out accuracy after the same number of steps, ours vs TRL's RewardTrainer.

    python -m bench.quality [--workload tiny] [--steps 100] [--lr 3e-4] [--seeds 0 1] [--against trl|bf16]
        [--no-record]

Both start from the same randomly initialised model directory and are given the same first steps x batch bench pairs
(batch 10, max length 512, AdamW without weight decay, constant lr, fp32): ours through
`rewardkit.training.loop.optimize`, TRL through bench/peers/trl_rm.py (which drops the pairs longer than max_length
and cycles over the rest). Each trained model is scored on the held-out bench pairs with its own training-time
encoding (ours: [CLS] prompt [SEP] response [SEP], prompt cut from the left; TRL's: prompt + response + EOS,
untruncated), by the same scorer (`rewardkit.modeling.inference.score_sequences`, inference mode). TRL cannot score a
pair longer than max_length without a truncation it never trained with, so the comparison is on the held-out pairs
that fit in max_length in both encodings ("fit"); ours is also reported on all held-out pairs. Ties count 1/2. "Within
noise": the gap of the seed means is compared with the standard error of a difference of two accuracies on n pairs
(sqrt(2 x 0.25 / n)) and with the spread over seeds. `--against bf16`: ours in fp32 against ours in bf16 (training
and scoring under bf16 autocast, train.precision/evaluate.precision = bf16) instead of TRL, on all held-out pairs
(#24: no loss of quality in bf16). """
from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from bench import system, workloads
from bench.ours import read_rows
from rewardkit.config import TrainConfig
from rewardkit.encoding.families import input_template
from rewardkit.encoding.templates import encode_both_answers
from rewardkit.encoding.tokenization import store_rows
from rewardkit.modeling.inference import score_sequences
from rewardkit.modeling.model import load_base
from rewardkit.modeling.objective import pair_correct
from rewardkit.training.distributed import Ranks
from rewardkit.training.loop import optimize

BATCH, MAX_LENGTH = 10, 512
TRL = Path(__file__).resolve().parent / "peers" / "trl_rm.py"


def train_ours(model_dir: Path, data: Path, steps: int, lr: float, seed: int, out: Path,
               precision: str = "fp32") -> Path:
    model, tokenizer = load_base(str(model_dir), "cls", seed)
    cfg = TrainConfig(max_length=MAX_LENGTH, batch_size=BATCH, epochs=1, lr=lr, weight_decay=0.0,
                      scheduler="constant", warmup_ratio=0.0, checkpoint_every=0, device="cpu", seed=seed,
                      precision=precision)
    with tempfile.TemporaryDirectory() as work:  # trained from a token store, as the train stage is
        pairs = store_rows(read_rows(str(data)), Path(work) / "store", tokenizer, model.hf.config, MAX_LENGTH)
        optimize(model, pairs, cfg, torch.device("cpu"), Ranks(), tokenizer.pad_token_id, Path(work) / "ckpt")
    model.hf.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def train_trl(model_dir: Path, data: Path, steps: int, lr: float, seed: int, out: Path) -> Path:
    cmd = [sys.executable, str(TRL), str(model_dir), str(data), "--steps", str(steps - 1), "--warmup", "1",
           "--batch", str(BATCH), "--max-length", str(MAX_LENGTH), "--lr", str(lr), "--seed", str(seed),
           "--save", str(out)]
    system.run_child(cmd, workloads.OUT / "logs" / f"quality-trl-seed{seed}.log", cwd=workloads.ROOT)
    return out


def trl_encoding(tokenizer, rows: list[dict]) -> tuple[list[list[int]], list[list[int]]]:
    """What TRL's RewardTrainer trains on: tokenizer(prompt + response + eos) with the tokenizer's specials."""
    def ids(key: str) -> list[list[int]]:
        return tokenizer([r["prompt"] + r[key] + tokenizer.eos_token for r in rows])["input_ids"]
    return ids("chosen"), ids("rejected")


def correct(model_dir: Path, chosen: list[list[int]], rejected: list[list[int]], precision: str = "fp32"
            ) -> torch.Tensor:
    """Per pair: 1 if r(chosen) > r(rejected), 1/2 on a tie, else 0."""
    model, tokenizer = load_base(str(model_dir), "cls", 0)
    rewards = score_sequences(model.eval(), chosen + rejected, tokenizer.pad_token_id, 64, torch.device("cpu"),
                              precision=precision)
    return pair_correct(rewards[:len(chosen)], rewards[len(chosen):])


def setup(a: argparse.Namespace) -> tuple[Path, Path, list[dict], object, tuple[list, list]]:
    """(model dir, training data, held-out rows, tokenizer, (chosen, rejected) ids in our encoding)."""
    train, held_out = workloads.bench_data()
    model_dir = workloads.model_dir(a.workload, train)
    rows = read_rows(str(held_out))
    model, tokenizer = load_base(str(model_dir), "cls", 0)
    enc = encode_both_answers(tokenizer, rows, MAX_LENGTH, input_template(model.hf.config, tokenizer))
    return (model_dir, workloads.first_rows(train, a.steps * BATCH), rows, tokenizer,
            (enc.ids[:len(rows)], enc.ids[len(rows):]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(workloads.WORKLOADS), default="tiny")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--against", choices=("trl", "bf16"), default="trl",
                        help="the other trainer: TRL's RewardTrainer, or ours in bf16")
    parser.add_argument("--no-record", action="store_true")
    a = parser.parse_args()
    if a.against == "bf16":
        return compare_precisions(a)
    model_dir, data, rows, tokenizer, (ours_chosen, ours_rejected) = setup(a)
    trl_chosen, trl_rejected = trl_encoding(tokenizer, rows)
    fit = torch.tensor([max(len(c), len(r), len(oc), len(orj)) <= MAX_LENGTH for c, r, oc, orj in
                        zip(trl_chosen, trl_rejected, ours_chosen, ours_rejected)])
    keep = fit.nonzero().flatten().tolist()
    results = {"ours": [], "ours (all pairs)": [], "trl": []}
    for seed in a.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"seed {seed}: training ours ...", flush=True)
            ours_ok = correct(train_ours(model_dir, data, a.steps, a.lr, seed, Path(tmp) / "ours"),
                              ours_chosen, ours_rejected)
            print(f"seed {seed}: training TRL ...", flush=True)
            trl_ok = correct(train_trl(model_dir, data, a.steps, a.lr, seed, Path(tmp) / "trl"),
                             [trl_chosen[i] for i in keep], [trl_rejected[i] for i in keep])
        results["ours"].append(ours_ok[keep].mean().item())
        results["ours (all pairs)"].append(ours_ok.mean().item())
        results["trl"].append(trl_ok.mean().item())
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in results.items()), flush=True)
    n = len(keep)
    se = (2 * 0.25 / n) ** 0.5
    mean = {k: statistics.fmean(v) for k, v in results.items()}
    gap = mean["ours"] - mean["trl"]
    lines = ["| trainer | held-out pairs | accuracy per seed | mean |", "|---|---:|---|---:|"]
    for name, accs in results.items():
        count = len(rows) if name == "ours (all pairs)" else n
        lines.append(f"| {name} | {count} | {', '.join(f'{x:.3f}' for x in accs)} | {mean[name]:.3f} |")
    verdict = "within noise" if abs(gap) <= 2 * se else ("ours better" if gap > 0 else "ours WORSE")
    lines += ["", f"- ours - TRL on the {n} pairs that fit: {gap:+.3f}; 2 x standard error of a difference of two "
                  f"accuracies on {n} pairs: {2 * se:.3f}: {verdict}"]
    if all(abs(mean[k] - 0.5) <= 2 * se for k in ("ours", "trl")):
        lines.append("- both are within 2 standard errors of chance (0.5): at this budget neither has learnt the "
                     "task, so this run does not discriminate; use more --steps or a higher --lr")
    print("\n" + "\n".join(lines))
    if a.no_record:
        return
    command = "python -m bench.quality " + " ".join(sys.argv[1:])
    section = [f"## {datetime.date.today().isoformat()}: quality after the same steps, ours vs TRL "
               f"(python -m bench.quality)", "", f"- machine: {system.machine()}", f"- command: `{command}`",
               f"- {a.workload} dims, random init, {a.steps} steps x {BATCH} pairs, max length {MAX_LENGTH}, "
               f"AdamW lr {a.lr} constant, no weight decay, fp32, seeds {a.seeds}", "", *lines, ""]
    system.record(section)


def compare_precisions(a: argparse.Namespace) -> None:
    """Ours trained and scored in fp32 against ours in bf16, same seeds, data and steps, on all held-out pairs."""
    model_dir, data, rows, _, (chosen, rejected) = setup(a)
    results: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for seed in a.seeds:
        for precision in results:
            with tempfile.TemporaryDirectory() as tmp:
                print(f"seed {seed}: training ours in {precision} ...", flush=True)
                trained = train_ours(model_dir, data, a.steps, a.lr, seed, Path(tmp) / "ours", precision)
                results[precision].append(correct(trained, chosen, rejected, precision).mean().item())
        print(f"seed {seed}: fp32 {results['fp32'][-1]:.3f}, bf16 {results['bf16'][-1]:.3f}", flush=True)
    n, mean = len(rows), {k: statistics.fmean(v) for k, v in results.items()}
    se, gap = (2 * 0.25 / n) ** 0.5, mean["bf16"] - mean["fp32"]
    lines = ["| precision | held-out pairs | accuracy per seed | mean |", "|---|---:|---|---:|",
             *(f"| {k} | {n} | {', '.join(f'{x:.3f}' for x in v)} | {mean[k]:.3f} |" for k, v in results.items()),
             "", f"- bf16 - fp32: {gap:+.3f}; 2 x standard error of a difference of two accuracies on {n} pairs: "
                 f"{2 * se:.3f}: " + ("within noise" if abs(gap) <= 2 * se else "bf16 better" if gap > 0
                                      else "bf16 WORSE")]
    print("\n" + "\n".join(lines))
    if not a.no_record:
        system.record([f"## {datetime.date.today().isoformat()}: quality after the same steps, ours fp32 vs bf16 "
                       f"(python -m bench.quality --against bf16)", "", f"- machine: {system.machine()}",
                       f"- command: `python -m bench.quality {' '.join(sys.argv[1:])}`",
                       f"- {a.workload} dims, random init, {a.steps} steps x {BATCH} pairs, max length "
                       f"{MAX_LENGTH}, AdamW lr {a.lr} constant, no weight decay, seeds {a.seeds}; each model "
                       "scored in the precision it was trained in", "", *lines, ""])


if __name__ == "__main__":
    main()
