"""The reward server under load: pairs/s and latency at 1, 8 and 64 concurrent clients, against offline scoring of
the same pairs in the same run, and the largest difference between their rewards.

    python -m bench.serve [--clients 1 8 64] [--requests 16 48 128] [--max-seconds 120] [--server-args "..."]
        [--max-load 0.7] [--no-record]
    python -m bench.serve --soak [--soak-minutes 3] [--soak-clients 32]    (bench/serve_soak.py)

The model is the scratch-tiny workload (bench/workloads.py: DeBERTa-v3 architecture, hidden 128, 2 layers, 8k
vocabulary, random init) wrapped as a reward-model artifact (max length 512, pooling cls), so no training is
needed. The server is `python -m stages.serve` on a free loopback port in its own process, with its defaults unless
--server-args says otherwise; the clients are httpx.AsyncClient tasks in this process, each sending its next
POST /score_pairs as soon as the last one answered. Requests hold 1-16 pairs (uniform) drawn without replacement
from the bench training conversations, so lengths vary widely and many pairs hit max length. Each level sends a
fixed number of requests (or stops at --max-seconds); offline is RewardScorer.score over exactly the pairs that
level sent, in one call, timed in this process while the server idles. Both run on the same cores, so the
clients' own CPU time counts against the server. Appends a dated section to bench/RESULTS.md unless --no-record.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from bench import serve_soak, system, workloads

MAX_LENGTH, MAX_PAIRS, SEED = 512, 16, 0
TARGET_RATIO, TOLERANCE = 0.7, 1e-5
HEADER = ("| clients | requests | pairs | server pairs/s | offline pairs/s | server/offline | p50 ms | p99 ms "
          "| errors | max abs diff | requests/batch |")


def artifact(train: Path) -> Path:
    """The scratch-tiny base as a reward-model directory, with training's metadata fields (statistics from 64
    training pairs scored by the untrained model)."""
    out = workloads.OUT / "models" / f"serve-tiny-{train.stem}"
    if (out / "reward_model.json").exists():
        return out
    import torch

    from rewardkit.encoding.templates import TRUNCATION_POLICY
    from rewardkit.modeling.artifact import save_artifact
    from rewardkit.modeling.model import load_base
    from rewardkit.scoring.scorer import RewardScorer

    model, tokenizer = load_base(str(workloads.model_dir("tiny", train)), "cls", SEED)
    meta = {"base_model": "scratch-tiny", "pooling": "cls", "max_length": MAX_LENGTH, "truncation": TRUNCATION_POLICY,
            "model_type": model.hf.config.model_type, "data_sha256": "bench"}
    scorer = RewardScorer(model.eval(), tokenizer, meta, torch.device("cpu"))
    rows = workloads.read_jsonl(train)[:64]
    rewards = scorer.rewards([r["prompt"] for r in rows] * 2,
                             [r["chosen"] for r in rows] + [r["rejected"] for r in rows])
    save_artifact(model, tokenizer, out, {**meta, "input_format": scorer.template.recipe,
                                          "input_kind": scorer.template.kind,
                                          "segment_ids": scorer.template.segment_ids,
                                          "reward_mean": round(rewards.mean().item(), 8),
                                          "reward_std": round(rewards.std().item(), 8)})
    return out


def requests_for(rows: list[dict], n: int, rng: random.Random) -> list[list[dict]]:
    """n requests of 1-16 pairs each, popped from `rows` (shuffled; each pair sent once in the run)."""
    out = []
    for _ in range(n):
        k = rng.randint(1, MAX_PAIRS)
        out.append([{f: row[f] for f in ("prompt", "chosen", "rejected")} for row in (rows.pop() for _ in range(k))])
    return out


def start_server(model: Path, extra: list[str], log: Path) -> tuple[subprocess.Popen, str]:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(workloads.ROOT)}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "stages.serve", "--model", str(model), "--port", "0",
                                 "--device", "cpu", *extra], cwd=workloads.ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(r"Uvicorn running on (http://\S+:\d+)", log.read_text(errors="replace"))
        if found:
            return proc, found.group(1)
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not start; see {log}")


async def load(url: str, clients: int, requests: list[list[dict]], max_seconds: float) -> dict:
    """Send `requests` from `clients` concurrent tasks; rewards per request (None on error) and latencies."""
    queue = list(enumerate(requests))[::-1]
    answers: list[list[float] | None] = [None] * len(requests)
    latencies, errors = [], 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        await http.post("/score_pairs", json={"pairs": requests[0][:1]})  # connect and warm up, untimed
        start = time.perf_counter()

        async def client() -> None:
            nonlocal errors
            while queue and time.perf_counter() - start < max_seconds:
                i, pairs = queue.pop()
                sent = time.perf_counter()
                try:
                    response = await http.post("/score_pairs", json={"pairs": pairs})
                    response.raise_for_status()
                    answers[i] = [x for p in response.json()["pairs"] for x in (p["reward_chosen"],
                                                                              p["reward_rejected"])]
                    latencies.append(time.perf_counter() - sent)
                except (httpx.HTTPError, KeyError, ValueError):
                    errors += 1

        await asyncio.gather(*(client() for _ in range(clients)))
        seconds = time.perf_counter() - start
    return {"answers": answers, "latencies": latencies, "errors": errors, "seconds": seconds}


def offline(scorer, requests: list[list[dict]]) -> tuple[list[float], float]:
    """RewardScorer.score over all pairs of `requests` in one call: (chosen, rejected per pair flattened, seconds)."""
    pairs = [p for r in requests for p in r]
    prompts = [p["prompt"] for p in pairs]
    start = time.perf_counter()
    rewards = scorer.score(prompts + prompts, [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs])
    seconds = time.perf_counter() - start
    n = len(pairs)
    return [x for c, r in zip(rewards[:n], rewards[n:]) for x in (c, r)], seconds


def batch_stats(url: str) -> tuple[float, float]:
    """(batches, requests served) so far, from the server's /metrics."""
    text = httpx.get(url + "/metrics", timeout=30).text
    get = lambda name: float(re.search(rf"^{name} (\S+)$", text, re.MULTILINE).group(1))  # noqa: E731
    return get("rewardkit_batch_requests_count"), get("rewardkit_batch_requests_sum")


def bench_level(url: str, scorer, clients: int, requests: list[list[dict]], max_seconds: float) -> dict:
    batches0, served0 = batch_stats(url)
    run = asyncio.run(load(url, clients, requests, max_seconds))
    batches1, served1 = batch_stats(url)
    done = [i for i, a in enumerate(run["answers"]) if a is not None]
    sent = [requests[i] for i in done]
    expected, offline_s = offline(scorer, sent)
    got = [x for i in done for x in run["answers"][i]]
    n_pairs = len(got) // 2
    latencies = np.array(run["latencies"]) * 1000
    return {"clients": clients, "requests": len(done), "pairs": n_pairs, "server": n_pairs / run["seconds"],
            "offline": n_pairs / offline_s, "p50": float(np.percentile(latencies, 50)),
            "p99": float(np.percentile(latencies, 99)), "errors": run["errors"],
            "cut": len(requests) - len(done) - run["errors"],
            "diff": max(abs(a - b) for a, b in zip(got, expected)),
            "per_batch": (served1 - served0) / max(1.0, batches1 - batches0)}


def table(rows: list[dict]) -> str:
    out = [HEADER, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['clients']} | {r['requests']} | {r['pairs']} | {r['server']:.1f} | {r['offline']:.1f} "
                   f"| {r['server'] / r['offline']:.2f}x | {r['p50']:.0f} | {r['p99']:.0f} | {r['errors']} "
                   f"| {r['diff']:.1e} | {r['per_batch']:.1f} |")
    return "\n".join(out)


def verdicts(rows: list[dict]) -> list[str]:
    out = []
    top = max(rows, key=lambda r: r["clients"])
    ratio = top["server"] / top["offline"]
    out.append(f"target server >= {TARGET_RATIO}x offline pairs/s at {top['clients']} clients: {ratio:.2f}x, "
               + ("met" if ratio >= TARGET_RATIO else "MISSED"))
    worst = max(r["diff"] for r in rows)
    out.append(f"target max |server - offline reward| <= {TOLERANCE:g}: {worst:.1e}, "
               + ("met" if worst <= TOLERANCE else "MISSED"))
    errors, cut = sum(r["errors"] for r in rows), sum(r["cut"] for r in rows)
    out.append(f"errors: {errors}" + (f"; {cut} requests not sent within --max-seconds" if cut else ""))
    return out


def soak_main(args, model: Path, rows: list[dict]) -> None:
    """The soak (bench/serve_soak.py) against a server with its defaults plus --server-args; a RESULTS.md row."""
    rng = random.Random(SEED)
    requests = requests_for(rows, 48, rng)  # ~400 pairs, cycled
    load_before = system.wait_for_quiet(args.max_load, 600) if args.max_load else system.load_1min()
    proc, url = start_server(model, shlex.split(args.server_args), workloads.OUT / "logs" / "serve-soak.log")
    try:
        fig = asyncio.run(serve_soak.soak(url, proc.pid, args.soak_minutes * 60, args.soak_clients, requests))
    finally:
        proc.terminate()
        proc.wait(60)
    load_after = system.load_1min()
    results = serve_soak.verdicts(fig, 5.0, 30.0)  # stages.serve's default --keep-alive-s, --body-timeout-s
    lines = [f"- {text}: {'met' if ok else 'MISSED'}" for text, ok in results]
    lines.append(f"- per window: high-water RSS MB {fig['rss_mb']}; requests {fig['requests_per_window']}; p50 ms "
                 f"{fig['p50_ms']}; p99 ms {fig['p99_ms']}")
    shown = {k: v for k, v in fig.items() if k not in ("slow_drops", "idle_drops_s")}
    print(json.dumps(shown) + "\n" + "\n".join(lines))
    if not args.no_record:
        command = "python -m bench.serve " + shlex.join(sys.argv[1:])
        system.record([f"## {datetime.date.today().isoformat()}: reward server soak (python -m bench.serve --soak)", "",
                       f"- machine: {system.machine()}", f"- command: `{command}`",
                       f"- load average (1 min): {load_before:.2f} before, {load_after:.2f} after",
                       f"- {args.soak_clients} clients back to back on POST /score_pairs (1-16 pairs), 4 slow "
                       "clients (a body byte a second), 64 idle connections, scratch-tiny dims; server defaults"
                       + (f" plus `{args.server_args}`" if args.server_args else ""), "", *lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64], help="concurrency levels")
    parser.add_argument("--requests", type=int, nargs="+", default=[16, 48, 128], help="requests per level")
    parser.add_argument("--max-seconds", type=float, default=120, help="stop a level after this long")
    parser.add_argument("--server-args", default="", help="extra flags for stages.serve, e.g. '--workers 1'")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--max-load", type=float, default=0.7, help="wait (up to 10 min) while the 1-min load "
                                                                      "is above this; 0 = do not wait")
    parser.add_argument("--soak", action="store_true", help="run the soak (bench/serve_soak.py) instead")
    parser.add_argument("--soak-minutes", type=float, default=3, help="soak length in minutes (default 3)")
    parser.add_argument("--soak-clients", type=int, default=32, help="soak clients (default 32)")
    args = parser.parse_args()
    if len(args.requests) != len(args.clients) or min(args.clients + args.requests) < 1:
        parser.error("give one positive --requests count per --clients level")
    from rewardkit.scoring.scorer import RewardScorer

    train, _ = workloads.bench_data()
    model = artifact(train)
    rows = workloads.read_jsonl(train)
    rng = random.Random(SEED)
    rng.shuffle(rows)
    if args.soak:
        return soak_main(args, model, rows)
    plan = [(c, requests_for(rows, n, rng)) for c, n in zip(args.clients, args.requests)]
    scorer = RewardScorer.from_pretrained(model, "cpu")
    offline(scorer, plan[0][1][:1])  # warm-up, untimed
    load_before = system.wait_for_quiet(args.max_load, 600) if args.max_load else system.load_1min()
    proc, url = start_server(model, shlex.split(args.server_args), workloads.OUT / "logs" / "serve.log")
    try:
        results = []
        for clients, requests in plan:
            print(f"[serve] {clients} clients, {len(requests)} requests ...", flush=True)
            results.append(bench_level(url, scorer, clients, requests, args.max_seconds))
            print(f"[serve] {json.dumps(results[-1])}", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)
    load_after = system.load_1min()
    lines = [table(results), "", *(f"- {v}" for v in verdicts(results))]
    print("\n" + "\n".join(lines))
    if args.no_record:
        return
    command = "python -m bench.serve " + shlex.join(sys.argv[1:])
    section = [f"## {datetime.date.today().isoformat()}: reward server under load (python -m bench.serve)", "",
               f"- machine: {system.machine()}", f"- command: `{command}`",
               f"- load average (1 min): {load_before:.2f} before, {load_after:.2f} after",
               f"- model: scratch-tiny dims, random init, max length {MAX_LENGTH}; server `stages.serve` defaults"
               + (f" plus `{args.server_args}`" if args.server_args else "") + "; requests of 1-16 pairs to "
               "POST /score_pairs; offline = RewardScorer.score over the same pairs in one call", "", *lines, ""]
    system.record(section)


if __name__ == "__main__":
    main()
