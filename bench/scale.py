"""Scale benchmark of the whole pipeline: validate -> split -> tokenize -> train -> evaluate on a generated
preference JSONL of N pairs, each stage its own `python -m stages.X` process, at the shipped params.

    python -m bench.scale [--sizes 100000 200000 1000000] [--shape hh|short] [--lean] [--gnu-time] [--no-record]

Data (bench/out/scale/<shape>-N.jsonl, reused when present):
- hh (default): HH-length conversations, as a new user tries it with Anthropic's HH data: 1-5 human turns, answers
  of 3-120 words (log-uniform) and intermediate assistant turns of 5-90, made-up words (bench/workloads.py's
  lexicon), each pair its own prompt (the conversation's index opens it), about 340 stored tokens a pair with the
  scratch-tiny tokenizer; no dirty lines.
- short: shorter English-word pairs, prompts shared by 1-3 pairs, about 260 tokens a pair, ~3% dirty lines
  (duplicates, near-duplicates, contradictions, broken lines).
Params: params.yaml as shipped, except model.name scratch-tiny, train.max_steps 3 and train.device cpu (with
--lean, the lighter settings of the earlier runs: max_steps 20, stats_pairs 5000, eval_fraction 0.02, lr 1e-3, no
warm-up, no checkpoints; short data also allows 10% rejects). Per stage: wall and CPU seconds (with worker
processes), peak RSS of the stage with its workers (psutil, every 50 ms, and the kernel's own maximum; with
--gnu-time also GNU time's `-v` figure), and what
the stage processed (lines read, pairs split, pairs tokenized, pairs trained on plus pairs scored for the training
metrics, pairs evaluated): the rate is that over the wall time. Target: every stage's peak RSS <= 1.5 GB at 200k
pairs (3 GB at 1M); tokenize 1M pairs <= 10 min. Appends a dated section to bench/RESULTS.md unless --no-record.
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
from typing import Iterator

import psutil
import yaml

from bench import system, workloads

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("BENCH_OUT", ROOT / "bench" / "out")) / "scale"
STAGES = ("validate", "split", "tokenize", "train", "evaluate")
TARGET_RSS_MB = {1_000_000: 3000, 200_000: 1500}  # every stage
TARGET_TOKENIZE_S = 600
GNU_TIME = "/usr/bin/time"  # GNU time (apt install time): -v reports the kernel's maximum RSS of the stage
SHIPPED = {"model": {"name": "scratch-tiny"}, "train": {"max_steps": 3, "device": "cpu"}}
LEAN = {"split": {"eval_fraction": 0.02}, "model": {"name": "scratch-tiny"},
        "train": {"max_steps": 20, "stats_pairs": 5000, "lr": 1e-3, "warmup_ratio": 0.0, "checkpoint_every": 0,
                  "device": "cpu"}}
WORDS = ("revenue margin equity bond yield dividend inflation portfolio hedge liquidity asset risk return ledger "
         "audit cash flow forecast quarter interest rate loan credit debt tax budget capital market savings index "
         "fund broker pension annuity mortgage principal spread duration volatility the a of to and in for on with "
         "is was be by as at that this from which will can should my your how what why when").split()


def words(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi)))


def short_lines(n: int, seed: int = 0) -> Iterator[str]:
    """n lines: short pairs with multi-turn prompts, and a few % duplicates and broken lines."""
    rng = random.Random(seed)
    keep: list[dict] = []
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
            yield rng.choice(['{"prompt": "cut off', '{"prompt": "x", "chosen": "y"}', "[1, 2]", ""])
        elif roll < 0.02 and keep:
            yield json.dumps(rng.choice(keep))  # exact duplicate
        elif roll < 0.03 and keep:
            row = rng.choice(keep)
            yield json.dumps({**row, "chosen": row["rejected"], "rejected": row["chosen"]})  # contradiction
        else:
            row = {"id": f"r{i}", "prompt": prompt, "chosen": " " + words(rng, 20, 60) + ".",
                   "rejected": " " + words(rng, 20, 60) + "."}
            if len(keep) < 5000:
                keep.append(row)
            yield json.dumps(row)


def hh_lines(n: int, seed: int = 0) -> Iterator[str]:
    """n HH-length pairs, each with its own prompt: the chosen answer stays on the conversation's topic, the
    rejected one drifts off it with a little filler (bench/workloads.py's signal)."""
    rng = random.Random(seed)
    lex = workloads.Lexicon(rng)
    for i in range(n):
        topic = rng.randrange(workloads.N_TOPICS)
        turns = rng.choice((1, 1, 1, 2, 2, 2, 3, 3, 4, 5))
        parts = []
        for t in range(turns):
            parts.append(f"\n\nHuman: {f'[{i}] ' if t == 0 else ''}{lex.text(rng, topic, rng.randint(4, 30))}")
            if t < turns - 1:
                parts.append(f"\n\nAssistant: {lex.text(rng, topic, workloads._log_uniform(rng, 5, 90))}")
        other = (topic + rng.randint(1, workloads.N_TOPICS - 1)) % workloads.N_TOPICS
        yield json.dumps({"id": f"hh-{i}", "prompt": "".join(parts) + "\n\nAssistant:",
                          "chosen": " " + lex.text(rng, topic, workloads._log_uniform(rng, 3, 120)),
                          "rejected": " " + lex.text(rng, other, workloads._log_uniform(rng, 3, 120),
                                                     workloads.EVASIVE_RATE)})


SHAPES = {"hh": hh_lines, "short": short_lines}


def generate(path: Path, n: int, shape: str = "hh", seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for line in SHAPES[shape](n, seed):
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


def gnu_time_rss_mb(report: str) -> float:
    """The "Maximum resident set size" of a `/usr/bin/time -v` report, in MB."""
    for line in report.splitlines():
        if "Maximum resident set size (kbytes)" in line:
            return int(line.rsplit(":", 1)[1]) / 1024
    raise ValueError("no 'Maximum resident set size' line in the GNU time report")


def run_stage(stage: str, workdir: Path, gnu_time: bool = False) -> dict[str, float]:
    """Run `python -m stages.<stage>` with dvc.yaml's arguments in workdir: wall s, CPU s, peak RSS MB (and with
    gnu_time, the stage run under `/usr/bin/time -v`, its own figure as "gnu_rss")."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    peak = 0
    cmd = [sys.executable, "-m", f"stages.{stage}", *stage_args(stage)]
    if gnu_time:
        cmd = [GNU_TIME, "-v", "-o", str(workdir / f"{stage}.time"), *cmd]
    with open(workdir / f"{stage}.log", "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
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
    row = {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": max(peak / 2 ** 20, usage.ru_maxrss / 1024)}
    if gnu_time:
        row["gnu_rss"] = gnu_time_rss_mb((workdir / f"{stage}.time").read_text())
    return row


def processed(stage: str, workdir: Path, params: dict) -> tuple[int, str]:
    """(how many, of what) the stage really processed, read from its outputs."""
    def read(name: str) -> dict:
        return json.loads((workdir / name).read_text())

    if stage == "validate":
        return read("metrics/validate.json")["lines_read"], "lines read"
    if stage == "split":
        split = read("metrics/split.json")
        return split["train_pairs"] + split["eval_pairs"], "pairs split"
    if stage == "tokenize":
        stores = [read(f"data/tokens/{s}/store.json") for s in ("train", "eval")]
        return sum(s["pairs_read"] for s in stores), "pairs tokenized"
    if stage == "train":
        train = read("metrics/train/metrics.json")  # the dvclive summary: "step" is the last step's
        trained = min(train["step"] * params["train"]["batch_size"], train["pairs_used"] * train["epochs"])
        scored = train.get("stats_pairs", train["pairs_used"])
        return trained + scored, f"pairs: {trained:,} trained on + {scored:,} scored for the train metrics"
    return read("metrics/eval.json")["pairs"], "pairs evaluated"


def bench_size(n: int, shape: str, overrides: dict, gnu_time: bool = False) -> tuple[list[dict], dict]:
    data = OUT / f"{shape}-{n}.jsonl"
    if not data.exists():
        print(f"generating {data} ...", flush=True)
        generate(data, n, shape)
    workdir = OUT / f"work-{shape}-{n}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    if shape == "short" and overrides is LEAN:
        params["validate"]["max_reject_fraction"] = 0.1
    params["data"] = {"path": str(data), "dir": str(OUT)}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    rows = []
    for stage in STAGES:
        print(f"[{n:,}] {stage} ...", flush=True)
        row = {"pairs": n, "stage": stage, **run_stage(stage, workdir, gnu_time)}
        print(f"[{n:,}] {stage}: {row['wall']:.0f} s, peak RSS {row['rss']:,.0f} MB", flush=True)
        row["done"], row["what"] = processed(stage, workdir, params)
        rows.append(row)
    store = json.loads((workdir / "data/tokens/train/store.json").read_text())
    shutil.rmtree(workdir / "data")  # several GB at 1M pairs; the input is kept for the next run
    return rows, store


def report(rows: list[dict], stores: dict[int, dict], command: str, load: tuple[float, float, float],
           settings: str) -> str:
    gnu = all("gnu_rss" in r for r in rows)
    table = ["| pairs | stage | wall s | CPU s | peak RSS MB |" + (" GNU time max RSS MB |" if gnu else "")
             + " processed | per s (wall) |", "|---:|---|---:|---:|---:|" + ("---:|" if gnu else "") + "---|---:|"]
    table += [f"| {r['pairs']:,} | {r['stage']} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss']:,.0f} | "
              + (f"{r['gnu_rss']:,.0f} | " if gnu else "")
              + f"{r['done']:,} {r['what'] if r['stage'] != 'train' else ''}".rstrip() + " | "
              f"{r['done'] / r['wall']:,.0f} |" for r in rows]
    lines = [f"{r['pairs']:,} train: {r['what']}" for r in rows if r["stage"] == "train"]
    for n, store in stores.items():
        size_rows = [r for r in rows if r["pairs"] == n]
        train, tokenize = (next(r for r in size_rows if r["stage"] == s) for s in ("train", "tokenize"))
        worst = max(size_rows, key=lambda r: r["rss"])
        lines.append(f"{n:,} pairs: train store {store['pairs']:,} pairs, {store['tokens']:,} tokens "
                     f"({store['tokens'] / store['pairs']:.0f} a pair, {4 * store['tokens'] / 2 ** 20:,.0f} MB of ids "
                     f"on disk); train peak RSS {train['rss']:,.0f} MB; tokenize {tokenize['wall']:.0f} s")
        if n in TARGET_RSS_MB:
            target = TARGET_RSS_MB[n]
            lines.append(f"target every stage's peak RSS at {n:,} pairs <= {target:,} MB: highest {worst['rss']:,.0f}"
                         f" MB ({worst['stage']}), " + ("met" if worst["rss"] <= target else "MISSED"))
        if n == 1_000_000:
            lines.append(f"target tokenize 1M pairs <= {TARGET_TOKENIZE_S // 60} min: {tokenize['wall'] / 60:.1f} "
                         "min, " + ("met" if tokenize["wall"] <= TARGET_TOKENIZE_S else "MISSED"))
    return "\n".join([f"## {datetime.date.today().isoformat()}: the pipeline at scale (bench/scale.py)", "",
                      f"- machine: {system.machine()}; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
                      f"- command: `{command}`", f"- {settings}",
                      "", *table, "", *(f"- {line}" for line in lines), ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 200_000, 1_000_000])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="hh", help="the generated texts (default hh)")
    parser.add_argument("--lean", action="store_true", help="the lighter params of the earlier runs")
    parser.add_argument("--gnu-time", action="store_true",
                        help=f"run each stage under `{GNU_TIME} -v` and report its maximum RSS too")
    parser.add_argument("--no-record", action="store_true", help="print the table, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    load = os.getloadavg()  # other work on the machine slows the stages: recorded beside the numbers
    overrides = LEAN if args.lean else SHIPPED
    rows, stores = [], {}
    for n in args.sizes:
        size_rows, stores[n] = bench_size(n, args.shape, overrides, args.gnu_time)
        rows += size_rows
    settings = (f"input: {args.shape} pairs (bench/scale.py); params: params.yaml with "
                + ", ".join(f"{s}.{k}={v}" for s, values in overrides.items() for k, v in values.items()))
    command = "python -m bench.scale " + " ".join(sys.argv[1:])
    section = report(rows, stores, command.strip(), load, settings)
    print(section)
    if not args.no_record:
        system.record(section.splitlines())


if __name__ == "__main__":
    main()
