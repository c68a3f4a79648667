"""Serve a trained reward model over HTTP with dynamic batching, for RLHF loops (OpenRLHF, TRL, your own).

    python -m stages.serve --model models/reward_model [--host 127.0.0.1] [--port 8000] [--api-key-file F] \\
        [--max-batch-tokens N] [--max-wait-ms M] [--max-pairs N] [--device auto] [--precision fp32]

Endpoints: POST /score, POST /score_pairs, POST /get_reward (OpenRLHF's --remote_rm_url), GET /health,
GET /metrics (see rewardkit/server.py). Binding anything but a loopback address needs --api-key-file; clients then
send `Authorization: Bearer <key>`, or put the key in the URL (`http://host:8000/k/<key>/get_reward`) when they
cannot send headers. SIGTERM (or Ctrl-C) stops taking connections, finishes the requests in flight, and exits.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rewardkit.config import PRECISIONS
from rewardkit.errors import run_main
from rewardkit.serving.config import ServeConfig, read_key_file, warn_if_readable
from rewardkit.serving.runner import serve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m stages.serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("models/reward_model"), help="trained reward model directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; others need a key)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 picks a free one)")
    p.add_argument("--api-key-file", type=Path, help="file holding the API key every endpoint but /health needs")
    p.add_argument("--max-batch-tokens", type=int, help="padded tokens per forward batch (default 8192 on CPU, "
                                                         "65536 on CUDA)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="longest wait for a batch to fill (default 5)")
    p.add_argument("--max-pairs", type=int, default=1024, help="most responses/pairs/queries per request "
                                                               "(default 1024)")
    p.add_argument("--max-body-mb", type=float, default=16.0, help="largest request body in MiB (default 16)")
    p.add_argument("--workers", type=int, help="batches scored at once (default: one per CPU thread; 1 on CUDA)")
    p.add_argument("--eos-text", action="append", default=[], help="text cut from the end of OpenRLHF responses, "
                                                                    "e.g. '<|im_end|>' (repeatable)")
    p.add_argument("--drain-timeout-s", type=float, default=60.0, help="on SIGTERM, how long in-flight requests "
                                                                       "may take (default 60)")
    p.add_argument("--keep-alive-s", type=float, default=5.0, help="close a connection idle this long (default 5)")
    p.add_argument("--body-timeout-s", type=float, default=30.0, help="408 and close when a request body takes "
                                                                     "longer (default 30)")
    p.add_argument("--limit-concurrency", type=int, default=512, help="connections or requests at once; more get "
                                                                     "503 (default 512)")
    p.add_argument("--max-header-kb", type=int, default=16, help="largest request head in KiB (default 16)")
    p.add_argument("--openapi", action="store_true", help="serve the OpenAPI schema at GET /openapi.json")
    p.add_argument("--device", default="auto", help="auto (cuda when visible), cpu, cuda or cuda:N")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="the model body's: auto (bf16 where the device has native bf16), fp32 or bf16")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    key = read_key_file(args.api_key_file) if args.api_key_file else None
    cfg = ServeConfig(model=args.model, host=args.host, port=args.port, api_key=key,
                      max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, max_pairs=args.max_pairs,
                      max_body_mb=args.max_body_mb, workers=args.workers, eos_text=tuple(args.eos_text),
                      device=args.device, precision=args.precision, drain_timeout_s=args.drain_timeout_s,
                      keep_alive_s=args.keep_alive_s, body_timeout_s=args.body_timeout_s,
                      limit_concurrency=args.limit_concurrency, max_header_kb=args.max_header_kb, openapi=args.openapi)
    if args.api_key_file:
        warn_if_readable(args.api_key_file)
    serve(cfg)


if __name__ == "__main__":
    run_main(main)
