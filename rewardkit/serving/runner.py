"""Run the reward server: load the model, serve with uvicorn until SIGTERM or Ctrl-C, drain the requests in
flight, exit 0."""
from __future__ import annotations

import signal
import sys

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from rewardkit.scoring.scorer import RewardScorer
from rewardkit.serving.config import ServeConfig
from rewardkit.serving.server import ScoringService, create_app


class IdleTimeoutH11(H11Protocol):
    """uvicorn's h11 protocol, with the keep-alive timer also running from the moment a connection opens: uvicorn
    starts it only after a response, so a client that connects and sends nothing would hold its slot forever."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)


def serve(cfg: ServeConfig) -> None:
    """Load the model, serve until SIGTERM or Ctrl-C, drain, exit. uvicorn stops accepting connections at once,
    lets in-flight requests finish (the batcher scores all queued work), then runs the app's shutdown."""
    service = ScoringService(RewardScorer.from_pretrained(cfg.model, cfg.device, cfg.precision), cfg)

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            service.draining = True  # /health turns 503 and new requests are refused while in-flight ones finish
            super().handle_exit(sig, frame)

    config = uvicorn.Config(create_app(service), host=cfg.host, port=cfg.port, log_level="info", access_log=False,
                            timeout_graceful_shutdown=cfg.drain_timeout_s, http=IdleTimeoutH11,
                            timeout_keep_alive=cfg.keep_alive_s, limit_concurrency=cfg.limit_concurrency,
                            h11_max_incomplete_event_size=cfg.max_header_kb * 1024)
    # uvicorn re-raises SIGTERM after a graceful shutdown; a clean drain then exits 0 instead of dying by signal
    signal.signal(signal.SIGTERM, lambda sig, frame: sys.exit(0))
    print(f"serve: {cfg.model} on {service.scorer.device} in {service.scorer.precision}, "
          f"{service.batcher.workers} batch worker(s), "
          f"{service.batcher.max_batch_tokens} tokens per batch, {cfg.max_wait_ms} ms wait"
          + (", API key required" if cfg.api_key else ""), flush=True)
    DrainingServer(config).run()
