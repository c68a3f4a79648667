"""How the reward server runs (`python -m stages.serve` flags), checked once before the model loads."""
from __future__ import annotations

import ipaddress
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rewardkit.config import PRECISIONS
from rewardkit.errors import UserError

if TYPE_CHECKING:
    import torch

GPU_BATCH_TOKENS = 65536  # a GPU wants large batches; lower --max-batch-tokens if a forward runs out of memory
KEY_PATTERN = re.compile(r"[A-Za-z0-9._~-]{16,}")  # URL-safe, so the key also works as the /k/<key>/ prefix
NEW_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))' > rm.key"


@dataclass(frozen=True)
class ServeConfig:
    """The server's settings; each field is the flag of the same name (`max_batch_tokens` is --max-batch-tokens)."""

    model: Path
    """Reward model directory written by the train stage."""
    host: str = "127.0.0.1"
    """Address to bind. Anything but a loopback address needs an API key."""
    port: int = 8000
    """TCP port; 0 picks a free one (uvicorn logs which)."""
    api_key: str | None = None
    """Key every endpoint but /health requires (read from --api-key-file); None: no key, loopback only."""
    max_batch_tokens: int | None = None
    """Padded tokens per forward batch; None: rewardkit.modeling.batching.CPU_BATCH_TOKENS on CPU, GPU_BATCH_TOKENS on
    CUDA."""
    max_wait_ms: float = 5.0
    """How long the oldest queued sequence may wait for others to share its batch."""
    max_pairs: int = 1024
    """Most responses (/score), pairs (/score_pairs) or queries (/get_reward) in one request; more is a 413."""
    max_body_mb: float = 16.0
    """Largest request body in MiB; more is a 413."""
    workers: int | None = None
    """Batches scored at once; None: one per CPU thread on CPU (one core each), 1 on CUDA."""
    eos_text: tuple[str, ...] = ()
    """Texts cut from the end of OpenRLHF responses: the policy's end-of-turn tokens, e.g. "<|im_end|>"."""
    device: str = "auto"
    """auto (cuda when visible), cpu, cuda or cuda:N."""
    precision: str = "fp32"
    """auto (bf16 where the device has native bf16), fp32 or bf16: the model body's; rewards are fp32."""
    drain_timeout_s: float = 60.0
    """On SIGTERM, how long in-flight requests may take before they are cancelled."""
    keep_alive_s: float = 5.0
    """An idle connection (between requests, or connected and silent) is closed after this long."""
    body_timeout_s: float = 30.0
    """A request body not received in full within this long is answered 408 and its connection closed."""
    limit_concurrency: int = 512
    """Connections (idle ones count) or requests at once; past it, new requests are answered 503."""
    max_header_kb: int = 16
    """Largest request line + headers in KiB (h11's incomplete event limit); more is a 400."""
    openapi: bool = False
    """Serve the OpenAPI schema at GET /openapi.json (behind the key like every endpoint but /health)."""

    def __post_init__(self) -> None:
        problems = [f"--{flag} must be {want}, got {value}" for flag, value, ok, want in (
            ("port", self.port, 0 <= self.port <= 65535, "0-65535"),
            ("max-batch-tokens", self.max_batch_tokens, self.max_batch_tokens is None or self.max_batch_tokens >= 1,
             "at least 1"),
            ("max-wait-ms", self.max_wait_ms, 0 <= self.max_wait_ms <= 10_000, "between 0 and 10000"),
            ("max-pairs", self.max_pairs, self.max_pairs >= 1, "at least 1"),
            ("max-body-mb", self.max_body_mb, self.max_body_mb > 0, "positive"),
            ("workers", self.workers, self.workers is None or self.workers >= 1, "at least 1"),
            ("drain-timeout-s", self.drain_timeout_s, self.drain_timeout_s > 0, "positive"),
            ("keep-alive-s", self.keep_alive_s, self.keep_alive_s > 0, "positive"),
            ("body-timeout-s", self.body_timeout_s, self.body_timeout_s > 0, "positive"),
            ("limit-concurrency", self.limit_concurrency, self.limit_concurrency >= 1, "at least 1"),
            ("max-header-kb", self.max_header_kb, self.max_header_kb >= 1, "at least 1"),
            ("precision", self.precision, self.precision in PRECISIONS, " or ".join(PRECISIONS))) if not ok]
        if any(not text for text in self.eos_text):
            problems.append("--eos-text must not be empty")
        if self.api_key is not None and not KEY_PATTERN.fullmatch(self.api_key):
            problems.append(f"the API key must be 16 or more URL-safe characters (A-Z a-z 0-9 . _ ~ -); make one "
                            f"with: {NEW_KEY}")
        if self.api_key is None and not is_loopback(self.host):
            problems.append(f"--host {self.host} is reachable from other machines and no --api-key-file was given: "
                            f"pass --api-key-file (make a key with: {NEW_KEY}) or bind 127.0.0.1")
        if problems:
            raise UserError("; ".join(problems))

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2 ** 20)

    def batch_tokens(self, device: torch.device) -> int:
        from rewardkit.modeling.batching import (
            CPU_BATCH_TOKENS,  # here, not at import: a bad flag fails before torch loads
        )

        if self.max_batch_tokens is not None:
            return self.max_batch_tokens
        return CPU_BATCH_TOKENS if device.type == "cpu" else GPU_BATCH_TOKENS


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; any other name or address (0.0.0.0 included) counts as reachable."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_key_file(path: Path) -> str:
    """The API key in `path` (surrounding whitespace ignored)."""
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise UserError(f"cannot read --api-key-file {path}: {e.strerror}") from None
    if not key:
        raise UserError(f"--api-key-file {path} is empty; make a key with: {NEW_KEY}")
    return key


def warn_if_readable(path: Path) -> None:
    """A one-line warning on stderr when the key file is readable by its group or by others, as ssh does for a
    private key (the server still starts); called once the settings are known good, so a bad key is one line."""
    mode = stat.S_IMODE(path.stat().st_mode)
    readers = [who for who, bit in (("group", stat.S_IRGRP), ("others", stat.S_IROTH)) if mode & bit]
    if readers:
        print(f"warning: --api-key-file {path} is readable by {' and '.join(readers)} (mode {mode:04o}): anyone who "
              f"can read it can use the server; make it private with: chmod 600 {path}", file=sys.stderr, flush=True)
