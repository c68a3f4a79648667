"""Scale benchmark of the whole pipeline: validate -> split -> tokenize -> train (a few steps) -> evaluate on a
synthetic HH-length preference JSONL of N pairs, each stage its own `python -m stages.X` process.

    python -m bench.scale [--sizes 100000 200000 1000000] [--no-record]

Data (bench/out/scale/pairs-N.jsonl, reused when present): multi-turn "\\n\\nHuman: ... \\n\\nAssistant:" prompts
shared by 1-3 pairs, answers of 20-60 words, about 320 stored tokens a pair with the scratch-tiny tokenizer, and
~3% dirty lines (duplicates, near-duplicates, contradictions, broken lines). Params: scratch-tiny, max length
512, batch 16, train.max_steps 20, train.stats_pairs 5000, split.eval_fraction 0.02 (so evaluate scores 2% of N),
no checkpoints. Per stage: wall and CPU seconds (with worker processes) and peak RSS of the stage with its workers
(psutil, every 50 ms). Targets (issue "real preference datasets at real scale"): train peak RSS <= 3 GB at 1M
pairs and <= 1.5 GB at 200k; tokenize 1M pairs <= 10 min. Appends a dated section to bench/RESULTS.md unless
--no-record.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from bench import system

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "out")) / "scale"
STAGES = ("validate", "split", "tokenize", "train", "evaluate")
TARGET_TRAIN_RSS_MB = {1_000_000: 3000, 200_000: 1500}
TARGET_TOKENIZE_S = 600
PARAMS = {"validate": {"max_reject_fraction": 0.1}, "split": {"eval_fraction": 0.02},
          "model": {"name": "scratch-tiny"},
          "train": {"max_length": 512, "batch_size": 16, "max_steps": 20, "stats_pairs": 5000, "lr": 1e-3,
                    "warmup_ratio": 0.0, "checkpoint_every": 0, "device": "cpu"},
          "evaluate": {"batch_size": 64}}
WORDS = ("revenue margin equity bond yield dividend inflation portfolio hedge liquidity asset risk return ledger "
         "audit cash flow forecast quarter interest rate loan credit debt tax budget capital market savings index "
         "fund broker pension annuity mortgage principal spread duration volatility the a of to and in for on with "
         "is was be by as at that this from which will can should my your how what why when").split()


def words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))


def generate(path: Path, n: int, seed: int = 0) -> None:
    """Write n lines: HH-style pairs with multi-turn prompts, and a few % duplicates and broken lines."""
    rng = random.Random(seed)
    keep: list[dict] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        prompt, left = "", 0
        for i in range(n):
            if left == 0:  # a new conversation shared by the next 1-3 pairs
                turns = [f"\n\nHuman: {words(rng, 8, 25)}?\n\nAssistant: {words(rng, 10, 30)}."
                         for _ in range(rng.randint(0, 2))]
                prompt = "".join(turns) + f"\n\nHuman: case {i}: {words(rng, 8, 25)}?\n\nAssistant:"
                left = rng.randint(1, 3)
            left -= 1
            roll = rng.random()
            if roll < 0.003:
                line = rng.choice(['{"prompt": "cut off', '{"prompt": "x", "chosen": "y"}', "[1, 2]", ""])
            elif roll < 0.02 and keep:
                line = json.dumps(rng.choice(keep))  # exact duplicate
            elif roll < 0.03 and keep:
                row = rng.choice(keep)
                line = json.dumps({**row, "chosen": row["rejected"], "rejected": row["chosen"]})  # contradiction
            else:
                row = {"id": f"r{i}", "prompt": prompt, "chosen": " " + words(rng, 20, 60) + ".",
                       "rejected": " " + words(rng, 20, 60) + "."}
                if len(keep) < 5000:
                    keep.append(row)
                line = json.dumps(row)
            f.write(line + "\n")
    tmp.replace(path)


def stage_args(stage: str) -> list[str]:
    cmd = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]["cmd"]
    return cmd.split()[3:]


def tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # exited between listing and reading
            pass
    return total


def run_stage(stage: str, workdir: Path) -> dict[str, float]:
    """Run `python -m stages.<stage>` with dvc.yaml's arguments in workdir: wall s, CPU s, peak RSS MB."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    peak = 0
    with open(workdir / f"{stage}.log", "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", f"stages.{stage}", *stage_args(stage)], cwd=workdir,
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        watched = psutil.Process(proc.pid)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # rusage of this child and its reaped workers
            if pid:
                break
            try:
                peak = max(peak, tree_rss(watched))
            except psutil.Error:
                pass
            time.sleep(0.05)
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"stages.{stage} failed:\n{(workdir / f'{stage}.log').read_text()[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss": max(peak / 2 ** 20, usage.ru_maxrss / 1024)}


def bench_size(n: int) -> tuple[list[dict], dict]:
    data = OUT / f"pairs-{n}.jsonl"
    if not data.exists():
        print(f"generating {data} ...", flush=True)
        generate(data, n)
    workdir = OUT / f"work-{n}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in PARAMS.items():
        params[section].update(values)
    params["data"] = {"path": str(data), "dir": str(OUT)}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    rows = []
    for stage in STAGES:
        print(f"[{n:,}] {stage} ...", flush=True)
        rows.append({"pairs": n, "stage": stage, **run_stage(stage, workdir)})
    store = json.loads((workdir / "data/tokens/train/store.json").read_text())
    shutil.rmtree(workdir / "data")  # several GB at 1M pairs; the input is kept for the next run
    return rows, store


def report(rows: list[dict], stores: dict[int, dict], command: str, load: tuple[float, float, float]) -> str:
    table = ["| pairs | stage | wall s | CPU s | peak RSS MB | pairs/s (wall) |", "|---:|---|---:|---:|---:|---:|"]
    table += [f"| {r['pairs']:,} | {r['stage']} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss']:,.0f} | "
              f"{r['pairs'] / r['wall']:,.0f} |" for r in rows]
    lines = []
    for n, store in stores.items():
        train = next(r for r in rows if r["pairs"] == n and r["stage"] == "train")
        tokenize = next(r for r in rows if r["pairs"] == n and r["stage"] == "tokenize")
        per_token = train["rss"] * 2 ** 20 / store["tokens"]
        lines.append(f"{n:,} pairs: train store {store['pairs']:,} pairs, {store['tokens']:,} tokens "
                     f"({store['tokens'] / store['pairs']:.0f} a pair, {4 * store['tokens'] / 2 ** 20:,.0f} MB of ids "
                     f"on disk); train peak RSS {train['rss']:,.0f} MB = {per_token:.1f} bytes per stored token, "
                     f"model and libraries included; tokenize {tokenize['wall']:.0f} s")
        if n in TARGET_TRAIN_RSS_MB:
            target = TARGET_TRAIN_RSS_MB[n]
            lines.append(f"target train peak RSS at {n:,} pairs <= {target:,} MB: {train['rss']:,.0f} MB, "
                         + ("met" if train["rss"] <= target else "MISSED"))
        if n == 1_000_000:
            lines.append(f"target tokenize 1M pairs <= {TARGET_TOKENIZE_S // 60} min: {tokenize['wall'] / 60:.1f} "
                         "min, " + ("met" if tokenize["wall"] <= TARGET_TOKENIZE_S else "MISSED"))
    return "\n".join([f"## {datetime.date.today().isoformat()}: the pipeline at scale (bench/scale.py)", "",
                      f"- machine: {system.machine()}; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
                      f"- command: `{command}`",
                      "- input: synthetic HH-length pairs (multi-turn prompts, ~3% dirty lines); params: scratch-tiny, "
                      "max length 512, batch 16, max_steps 20, stats_pairs 5000, eval_fraction 0.02",
                      "", *table, "", *(f"- {line}" for line in lines), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 200_000, 1_000_000])
    parser.add_argument("--no-record", action="store_true", help="print the table, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    load = os.getloadavg()  # other work on the machine slows the stages: recorded beside the numbers
    rows, stores = [], {}
    for n in args.sizes:
        size_rows, stores[n] = bench_size(n)
        rows += size_rows
    section = report(rows, stores, "python -m bench.scale --sizes " + " ".join(map(str, args.sizes)), load)
    print(section)
    if not args.no_record:
        system.record(section.splitlines())


if __name__ == "__main__":
    main()
