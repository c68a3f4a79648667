"""A bounded soak of the reward server (`python -m bench.serve --soak [--soak-minutes 3]`): `clients` clients send
POST /score_pairs back to back for the whole run, while slow clients trickle a request body a byte a second and
idle connections open and say nothing, both reopened each time the server drops them.

The run is cut in WINDOWS equal windows; the first is warm-up. Targets: RSS growth within 5% (`rss_growth`: the
server's high-water RSS, sampled every RSS_EVERY_S, of the last windows against the first after warm-up), p99 latency drift within 20% (`p99_drift`), no error, a fixed probe request's rewards the same in every window (within TOLERANCE), every slow client answered 408
and every idle connection closed by the server (within its timeout plus a margin) while the others are served.
"""
from __future__ import annotations

import asyncio
import time
from urllib.parse import urlparse

import httpx
import numpy as np
import psutil

WINDOWS, TOLERANCE = 6, 1e-5
RSS_GROWTH, P99_DRIFT, MARGIN_S = 0.05, 0.20, 3.0
SPAN = 2  # windows pooled at each end for the p99 drift and the RSS growth
RSS_EVERY_S = 1.0


def p99_drift(windows: list[list[float]], span: int = SPAN) -> tuple[float, float, float]:
    """(p99 of the first `span` windows after warm-up pooled, p99 of the last `span` pooled, relative change).

    32 closed-loop clients send ~170 requests in a 30 s window of the 3-minute soak, so one window's p99 is its
    2nd largest sample: adjacent windows of one run differed by up to 8.5% (two 3-minute runs, 2026-12-07).
    Pooling two windows at each end doubles the samples behind each p99 while still comparing the start of the
    steady state with its end: a server that slows down over the run still fails; the warm-up window is never used."""
    if len(windows) < 1 + 2 * span:
        raise ValueError(f"need at least {1 + 2 * span} windows (warm-up + {span} at each end), got {len(windows)}")
    first = float(np.percentile([x for w in windows[1:1 + span] for x in w], 99))
    last = float(np.percentile([x for w in windows[-span:] for x in w], 99))
    return first, last, last / first - 1


async def trickle(host: str, port: int, until: float) -> list[tuple[bytes, float]]:
    """A slow client, over and over until `until`: a body sent a byte a second; (status line, seconds) per drop."""
    out = []
    while time.monotonic() < until - 1:
        reader, writer = await asyncio.open_connection(host, port)
        start = time.monotonic()
        writer.write(b"POST /score_pairs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n")
        answer = b""
        while not reader.at_eof() and time.monotonic() < until + MARGIN_S:
            writer.write(b" ")
            try:
                answer += await asyncio.wait_for(reader.read(4096), 1.0)
            except (TimeoutError, asyncio.TimeoutError):
                continue
            except ConnectionError:
                break
        out.append((answer.split(b"\r\n", 1)[0], time.monotonic() - start))
        writer.close()
    return out


async def idle(host: str, port: int, until: float, wait_s: float) -> list[float]:
    """An idle connection, over and over until `until`: seconds until the server closed each (inf: not within
    `wait_s`, however late in the run it was opened)."""
    out = []
    while time.monotonic() < until - 1:
        reader, writer = await asyncio.open_connection(host, port)
        start = time.monotonic()
        try:
            await asyncio.wait_for(reader.read(), wait_s)
            out.append(time.monotonic() - start)
        except (TimeoutError, asyncio.TimeoutError):
            out.append(float("inf"))
        except ConnectionError:
            out.append(time.monotonic() - start)
        writer.close()
    return out


async def soak(url: str, pid: int, seconds: float, clients: int, requests: list[list[dict]], slow: int = 4,
               idle_connections: int = 64, keep_alive_s: float = 5.0) -> dict:
    """Run the soak against the server at `url` (process `pid`, its --keep-alive-s `keep_alive_s`); the figures
    `verdicts` judges."""
    where = urlparse(url)
    start = time.monotonic()
    until, window_s = start + seconds, seconds / WINDOWS
    latencies: list[list[float]] = [[] for _ in range(WINDOWS)]
    rss: list[list[float]] = [[] for _ in range(WINDOWS)]  # MB, every RSS_EVERY_S
    probes, errors = [], 0
    probe = {"pairs": requests[0]}
    limits = httpx.Limits(max_connections=clients + 1, max_keepalive_connections=clients + 1)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        async def client(k: int) -> None:
            nonlocal errors
            i = k
            while time.monotonic() < until:
                sent = time.monotonic()
                try:
                    (await http.post("/score_pairs", json={"pairs": requests[i % len(requests)]})).raise_for_status()
                    latencies[min(WINDOWS - 1, int((sent - start) / window_s))].append(time.monotonic() - sent)
                except httpx.HTTPError:
                    errors += 1
                i += clients

        async def monitor() -> None:
            for w in range(WINDOWS):
                await asyncio.sleep(max(0.0, start + (w + 1) * window_s - time.monotonic() - 0.5))
                answer = (await http.post("/score_pairs", json=probe)).json()["pairs"]
                probes.append([x for p in answer for x in (p["reward_chosen"], p["reward_rejected"])])

        async def memory() -> None:
            server = psutil.Process(pid)
            while (now := time.monotonic()) < until:
                rss[min(WINDOWS - 1, int((now - start) / window_s))].append(server.memory_info().rss / 2 ** 20)
                await asyncio.sleep(RSS_EVERY_S)

        tasks = [client(k) for k in range(clients)] + [monitor(), memory()]
        tasks += [trickle(where.hostname, where.port, until) for _ in range(slow)]
        tasks += [idle(where.hostname, where.port, until, keep_alive_s + MARGIN_S) for _ in range(idle_connections)]
        done = await asyncio.gather(*tasks)
    slow_drops = [d for found in done[clients + 2:clients + 2 + slow] for d in found]
    idle_drops = [s for found in done[clients + 2 + slow:] for s in found]
    ms = [[x * 1000 for x in w] for w in latencies]
    first, last, _ = p99_drift(ms)
    rss_first, rss_last, _ = rss_growth(rss)
    return {"seconds": seconds, "clients": clients, "requests": sum(map(len, latencies)), "errors": errors,
            "rss_mb": [round(max(w), 1) if w else float("nan") for w in rss],
            "rss_pooled_mb": [round(rss_first, 1), round(rss_last, 1)], "requests_per_window": [len(w) for w in ms],
            "p50_ms": [round(float(np.percentile(w, 50)), 1) if w else float("nan") for w in ms],
            "p99_ms": [round(float(np.percentile(w, 99)), 1) if w else float("nan") for w in ms],
            "p99_pooled_ms": [round(first, 1), round(last, 1)],
            "probe_diff": max(abs(a - b) for p in probes for a, b in zip(p, probes[0])),
            "slow_drops": [(status.decode(errors="replace"), round(s, 1)) for status, s in slow_drops],
            "idle_drops_s": [round(s, 1) for s in idle_drops]}


def rss_growth(windows: list[list[float]], span: int = SPAN) -> tuple[float, float, float]:
    """(high-water RSS of the first `span` windows after warm-up, of the last `span`, relative change).

    The server trims its heap (rewardkit.allocator.HeapBound) once it grew 128 MB, so its RSS is a sawtooth
    (510-655 MB in a 3-minute soak, 2026-12-07): one sample per window compares phases of the saw, not growth
    (+26.5% from a trough after warm-up to a crest, with the crests flat). The high-water mark of many samples per
    window is what a leak raises: a server that keeps memory over the run still fails."""
    if len(windows) < 1 + 2 * span or not all(windows):
        raise ValueError(f"need RSS samples in at least {1 + 2 * span} windows (warm-up + {span} at each end)")
    first = max(x for w in windows[1:1 + span] for x in w)
    last = max(x for w in windows[-span:] for x in w)
    return first, last, last / first - 1


def verdicts(fig: dict, keep_alive_s: float, body_timeout_s: float) -> list[tuple[str, bool]]:
    """(what was measured against which target, met) per target."""
    (rss_first, rss_last), (first, last) = fig["rss_pooled_mb"], fig["p99_pooled_ms"]
    growth = rss_last / rss_first - 1
    drift = last / first - 1
    slow_ok = bool(fig["slow_drops"]) and all(status.startswith("HTTP/1.1 408") and s <= body_timeout_s + MARGIN_S
                                              for status, s in fig["slow_drops"])
    idle_ok = bool(fig["idle_drops_s"]) and max(fig["idle_drops_s"]) <= keep_alive_s + MARGIN_S
    return [(f"RSS growth after warm-up, high-water of windows 2-{1 + SPAN} vs the last {SPAN}, <= {RSS_GROWTH:.0%}: "
             f"{growth:+.1%} ({rss_first} -> {rss_last} MB)",
             growth <= RSS_GROWTH),
            (f"p99 drift, windows 2-{1 + SPAN} pooled vs the last {SPAN}, <= {P99_DRIFT:.0%}: {drift:+.1%} "
             f"({first} -> {last} ms)", drift <= P99_DRIFT),
            (f"errors: {fig['errors']} of {fig['requests']} requests", fig["errors"] == 0),
            (f"probe rewards unchanged (<= {TOLERANCE:g}): max diff {fig['probe_diff']:.1e}",
             fig["probe_diff"] <= TOLERANCE),
            (f"slow clients answered 408 within --body-timeout-s {body_timeout_s:g} + {MARGIN_S:g} s: "
             f"{len(fig['slow_drops'])} drops, longest {max((s for _, s in fig['slow_drops']), default=0)} s",
             slow_ok),
            (f"idle connections closed within --keep-alive-s {keep_alive_s:g} + {MARGIN_S:g} s: "
             f"{len(fig['idle_drops_s'])} drops, longest {max(fig['idle_drops_s'], default=0)} s", idle_ok)]
