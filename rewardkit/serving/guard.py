"""The ASGI layer in front of the reward server's routes: the API key, the body size limit, refusal while draining.

Pure ASGI rather than FastAPI dependencies, so a refused request costs no JSON parsing and an oversized body is
never read past the limit. With a key, every path but /health needs it, either as `Authorization: Bearer <key>` or
as the URL prefix `/k/<key>/` (for clients that send no headers, such as OpenRLHF's remote reward model client);
keys are compared in constant time.
"""
from __future__ import annotations

import asyncio
import hmac
import json
from typing import Callable

from rewardkit.serving.metrics import KEY_PREFIX


class ApiError(Exception):
    """A request the client can fix: answered as {"error": message} with HTTP `status`."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


UNAUTHORIZED = ("missing or wrong API key: send the header 'Authorization: Bearer <key>', or put the key in the "
                "URL as /k/<key>/<endpoint>")


async def send_error(send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """A JSON error response {"error": message} straight to the ASGI `send`."""
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def bearer_token(scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class Guard:
    """Key check, then draining check, then the body read in full (at most `max_body_bytes`, within
    `body_timeout_s`: a client trickling its body is answered 408 and dropped) and replayed."""

    def __init__(self, app, api_key: str | None, max_body_bytes: int, draining: Callable[[], bool],
                 body_timeout_s: float = 30.0):
        self.app, self.max_body_bytes, self.draining = app, max_body_bytes, draining
        self.body_timeout_s = body_timeout_s
        self.key = api_key.encode() if api_key is not None else None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = None
        if scope["path"].startswith(KEY_PREFIX):  # /k/<key>/score -> /score with the key as given
            given, _, rest = scope["path"][len(KEY_PREFIX):].partition("/")
            scope = dict(scope, path="/" + rest, raw_path=("/" + rest).encode())
        if scope["path"] == "/health":  # open to probes; it reports draining itself
            return await self.app(scope, receive, send)
        if self.key is not None:
            given = given if given is not None else bearer_token(scope)
            if given is None or not hmac.compare_digest(given.encode("utf-8", "replace"), self.key):
                return await send_error(send, 401, UNAUTHORIZED, [(b"www-authenticate", b"Bearer")])
        if self.draining():
            return await send_error(send, 503, "the server is shutting down: retry on another replica or later")
        try:
            async with asyncio.timeout(self.body_timeout_s):
                body = await self._read_body(scope, receive, send)
        except TimeoutError:
            return await send_error(send, 408, f"request body not received within {self.body_timeout_s:g} s (the "
                                    "server's --body-timeout-s)", [(b"connection", b"close")])
        if body is None:
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # the app then waits for http.disconnect, as usual
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read_body(self, scope, receive, send) -> bytes | None:
        """The whole body, or None after answering 413 (or when the client went away)."""
        too_big = (f"request body over {self.max_body_bytes:,} bytes: send fewer or shorter texts per request "
                   "(the server's --max-body-mb)")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_error(send, 413, too_big)
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_error(send, 413, too_big)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
