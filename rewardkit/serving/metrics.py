"""The reward server's Prometheus metrics (GET /metrics) and the ASGI middleware that counts every request.

prometheus_client writes the text format and negotiates OpenMetrics; each server has its own registry, so tests
and several apps in one process do not share counters. `rewardkit_batch_requests` is the proof of coalescing: a
batch that served more than one request falls above its `le="1.0"` bucket.
"""
from __future__ import annotations

import time
from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from rewardkit.serving.batcher import BatchStats

ENDPOINTS = ("/score", "/score_pairs", "/get_reward", "/health", "/metrics")
"""Known paths are labels as they are; any other path is counted as "other" (no label per random URL)."""
KEY_PREFIX = "/k/"
"""`/k/<api key>/score` is /score for clients that cannot send headers (OpenRLHF): see rewardkit.serving.guard."""


def endpoint_label(path: str) -> str:
    """The endpoint label of a request path, with any /k/<key> prefix removed (a key never becomes a label)."""
    if path.startswith(KEY_PREFIX):
        path = "/" + path[len(KEY_PREFIX):].partition("/")[2]
    return path if path in ENDPOINTS else "other"


class ServerMetrics:
    """Counters, histograms and gauges of one server; `queue_depth` is read at every scrape."""

    def __init__(self, queue_depth: Callable[[], int]):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("rewardkit_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("rewardkit_request_seconds", "HTTP request latency by endpoint", ["endpoint"],
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30), registry=r)
        self.in_flight = Gauge("rewardkit_requests_in_flight", "HTTP requests being served", registry=r)
        self.queue = Gauge("rewardkit_queue_depth", "sequences waiting for a batch", registry=r)
        self.queue.set_function(queue_depth)
        self.sequences = Counter("rewardkit_sequences_scored", "(prompt, response) sequences scored", registry=r)
        self.pairs = Counter("rewardkit_pairs_scored", "preference pairs scored by /score_pairs", registry=r)
        self.batch_sequences = Histogram("rewardkit_batch_sequences", "sequences per forward batch",
                                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), registry=r)
        self.batch_requests = Histogram("rewardkit_batch_requests", "requests served by one forward batch",
                                        buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.batch_tokens = Histogram("rewardkit_batch_padded_tokens", "padded tokens per forward batch",
                                      buckets=tuple(2 ** k for k in range(7, 18)), registry=r)
        self.forward = Histogram("rewardkit_forward_seconds", "seconds per forward batch",
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5), registry=r)

    def on_batch(self, stats: BatchStats) -> None:
        self.batch_sequences.observe(stats.sequences)
        self.batch_requests.observe(stats.requests)
        self.batch_tokens.observe(stats.padded_tokens)
        self.forward.observe(stats.seconds)

    def render(self, accept: str | None) -> tuple[bytes, str]:
        """(body, content type) in the format the scraper asks for (Prometheus text unless OpenMetrics)."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type


class MetricsMiddleware:
    """Outermost ASGI layer: requests by endpoint and status (401s and 413s included), latency, in-flight."""

    def __init__(self, app, metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint, status, start = endpoint_label(scope["path"]), 500, time.perf_counter()

        async def send_with_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
