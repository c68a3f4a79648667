"""Scale benchmark of the data stages: validate then split on a synthetic preference JSONL of N pairs.

    python -m bench.data_scale [--sizes 100000 1000000] [--no-record]

For each size it generates bench/out/pairs-N.jsonl (git-ignored; reused when present, delete it after changing
`generate`): lines of 300-650 bytes, prompts shared by 1-5 pairs, about 2% exact duplicates, 0.5% near-duplicates,
0.2% contradictions and 0.3% broken lines. Each stage runs as its own `python -m stages.X` in bench/out/work-N/
with a params.yaml of its own; wall time, CPU time (the stage and its worker processes) and peak RSS are measured
(see `run_stage`). Prints a table and, unless --no-record, appends a dated section to bench/RESULTS.md.
Targets: validate + split of 1M pairs in <= 60 s on the 2-core CI machine, peak RSS <= 500 MB, flat in N.
The load average at the start is recorded too: other work on the machine inflates wall times.
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
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "RESULTS.md"
TARGET_SECONDS, TARGET_RSS_MB = 60.0, 500.0

WORDS = ("revenue margin equity bond yield dividend inflation portfolio hedge liquidity asset risk return "
         "ledger audit cash flow forecast quarter interest rate loan credit debt tax budget capital market "
         "the a of to and in for on with is was be by as at that this from which will can should").split()
EXTRAS = ("", "", "", " — résumé naïve", " 利润率和现金流", " ربح صافٍ", " 📈💰", " e\u0301t\u0301e\u0301")


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(lo, hi))) + rng.choice(EXTRAS)


def generate(path: Path, n: int, seed: int = 0) -> None:
    """Write n lines: mostly valid pairs (varied lengths, unicode), a few % duplicates and bad lines."""
    rng = random.Random(seed)
    rows: list[dict] = []
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        prompt, left = "", 0
        for i in range(n):
            if left == 0:  # a new prompt shared by the next 1-5 pairs
                prompt, left = f"Q{i}: " + sentence(rng, 8, 24) + "?", rng.randint(1, 5)
            left -= 1
            roll = rng.random()
            if roll < 0.003:
                line = rng.choice(['{"prompt": "cut off', '{"prompt": "x", "chosen": "y"}', "[1, 2]", "",
                                   '{"prompt": "p", "chosen": NaN, "rejected": "r"}'])
            elif roll < 0.023 and rows:
                line = json.dumps(rng.choice(rows), ensure_ascii=False)  # exact duplicate
            elif roll < 0.028 and rows:
                row = rng.choice(rows)
                line = json.dumps({**row, "prompt": "  " + row["prompt"].upper()}, ensure_ascii=False)
            elif roll < 0.030 and rows:
                row = rng.choice(rows)
                line = json.dumps({**row, "chosen": row["rejected"], "rejected": row["chosen"]}, ensure_ascii=False)
            else:
                row = {"id": f"r{i}", "prompt": prompt, "chosen": sentence(rng, 12, 36),
                       "rejected": sentence(rng, 6, 24), "source": "synthetic"}
                if rng.random() < 0.3:
                    row["margin"] = round(rng.uniform(0, 2), 3)
                if len(rows) < 5000:
                    rows.append(row)
                elif rng.random() < 0.01:
                    rows[rng.randrange(len(rows))] = row
                line = json.dumps(row, ensure_ascii=False)
            f.write(line + "\n")
    tmp.replace(path)


STAGE_ARGS = {  # the paths dvc.yaml gives each stage
    "validate": ["--validated", "data/validated.jsonl", "--rejects", "data/rejects.jsonl",
                 "--metrics", "metrics/validate.json"],
    "split": ["--input", "data/validated.jsonl", "--train", "data/train.jsonl", "--eval", "data/eval.jsonl",
              "--metrics", "metrics/split.json"],
}


def run_stage(module: str, workdir: Path) -> dict[str, float]:
    """Run `python -m stages.<module>` in workdir and measure it.

    wall: seconds; cpu: user+sys seconds of the stage and its worker processes; rss: peak RSS of the stage
    process itself (wait4); rss_all: peak of the summed RSS of the stage and its workers (psutil, every 50 ms).
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rss_all = 0
    with open(workdir / f"{module}.log", "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", f"stages.{module}", *STAGE_ARGS[module]], cwd=workdir, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        watched = psutil.Process(proc.pid)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # rusage of this child and its reaped workers
            if pid:
                break
            rss_all = max(rss_all, _tree_rss(watched))
            time.sleep(0.05)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"stages.{module} failed (exit {proc.returncode}):\n{(workdir / f'{module}.log').read_text()}")
    rss = usage.ru_maxrss / 1024  # KiB on Linux
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": rss, "rss_all": max(rss_all / 2**20, rss)}


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for p in [process, *_children(process)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:  # exited between listing and reading
            pass
    return total


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        return process.children(recursive=True)
    except psutil.Error:
        return []


def bench_size(n: int) -> list[dict]:
    data = OUT / f"pairs-{n}.jsonl"
    if not data.exists():
        print(f"generating {data} ...", flush=True)
        generate(data, n)
    workdir = OUT / f"work-{n}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    params = {"data": {"path": str(data)}, "validate": {"max_line_bytes": 1_000_000, "max_reject_fraction": 0.1},
              "split": {"eval_fraction": 0.1, "seed": 20240611}}
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    rows = [{"pairs": n, "stage": module, **run_stage(module, workdir)} for module in ("validate", "split")]
    rows.append({"pairs": n, "stage": "validate+split", **{k: sum(r[k] for r in rows) for k in ("wall", "cpu")},
                 **{k: max(r[k] for r in rows) for k in ("rss", "rss_all")}})
    print((workdir / "validate.log").read_text().strip(), (workdir / "split.log").read_text().strip(), sep="\n")
    shutil.rmtree(workdir / "data")
    shutil.rmtree(workdir / "metrics", ignore_errors=True)  # ~1 GB at 1M pairs; the input is kept for the next run
    return rows


def report(rows: list[dict], command: str, load: tuple[float, float, float]) -> str:
    table = ["| pairs | stage | wall s | CPU s | peak RSS MB (stage) | peak RSS MB (with workers) | lines/s (wall) |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    table += [f"| {r['pairs']:,} | {r['stage']} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['rss']:.0f} | "
              f"{r['rss_all']:.0f} | {r['pairs'] / r['wall']:,.0f} |" for r in rows]
    largest = max(r["pairs"] for r in rows)
    total = next(r for r in rows if r["pairs"] == largest and r["stage"] == "validate+split")
    met = total["wall"] <= TARGET_SECONDS and total["rss_all"] <= TARGET_RSS_MB
    verdict = (f"{largest:,} pairs: validate+split {total['wall']:.1f} s wall (target <= {TARGET_SECONDS:.0f} s), "
               f"peak RSS {total['rss_all']:.0f} MB with workers (target <= {TARGET_RSS_MB:.0f} MB): "
               + ("both met" if met else "TARGET MISSED"))
    smallest = min(r["pairs"] for r in rows)
    if smallest < largest:
        low = next(r for r in rows if r["pairs"] == smallest and r["stage"] == "validate+split")
        verdict += (f"; peak RSS grows {low['rss_all']:.0f} -> {total['rss_all']:.0f} MB from {smallest:,} to "
                    f"{largest:,} pairs ({largest // smallest}x the data)")
    return "\n".join([f"## {datetime.date.today().isoformat()}: data stages at scale (bench/data_scale.py)", "",
                      f"- machine: {system.machine()}; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
                      f"- command: `{command}`",
                      "- input: synthetic pairs, 300-650 bytes a line, ~3% rejected (duplicates, near-duplicates, "
                      "contradictions, broken lines); each stage runs as its own process",
                      "", *table, "", f"- {verdict}", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--no-record", action="store_true", help="print the table, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()  # other work on the machine slows the stages: recorded beside the numbers
    rows = [row for n in args.sizes for row in bench_size(n)]
    section = report(rows, "python -m bench.data_scale --sizes " + " ".join(map(str, args.sizes)), load)
    print(section)
    if args.no_record:
        return
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n")
    with open(RESULTS, "a", encoding="utf-8") as f:
        f.write("\n" + section)


if __name__ == "__main__":
    main()
