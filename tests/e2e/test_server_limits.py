"""The reward server against slow, idle and oversized clients, as a real process with small limits: idle
connections are closed after --keep-alive-s (silent new ones too), a body trickled in is answered 408 after
--body-timeout-s while others are served, --limit-concurrency answers 503 past its count, --max-header-kb
refuses an unfinished request head over it. Each test fails if its flag were ignored (the defaults are 5 s,
30 s, 512 and 16 KiB)."""
from __future__ import annotations

import socket
import time
from urllib.parse import urlparse

import httpx
import pytest

from tests.e2e.test_server import Server, artifact  # noqa: F401 (artifact: the module's tiny model fixture)

pytestmark = pytest.mark.e2e
HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def limited(artifact, tmp_path_factory):  # noqa: F811
    server = Server(tmp_path_factory.mktemp("limits") / "limited.log", "--model", str(artifact), "--device", "cpu",
                    "--keep-alive-s", "1", "--body-timeout-s", "2", "--limit-concurrency", "6", "--max-header-kb", "4")
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def connect(server: Server) -> socket.socket:
    where = urlparse(server.url)
    sock = socket.create_connection((where.hostname, where.port), timeout=10)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(whether the server closed `sock` within `seconds`, what it sent before)."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
        return True, got
    except (TimeoutError, socket.timeout):
        return False, got
    except ConnectionResetError:
        return True, got


def test_idle_connections_are_closed_after_keep_alive_even_before_a_first_request(limited):
    served, silent = connect(limited), connect(limited)
    served.sendall(HEALTH)
    start = time.monotonic()
    closed, got = closed_within(served, 4)
    assert got.startswith(b"HTTP/1.1 200") and closed and time.monotonic() - start < 3
    closed, got = closed_within(silent, 3)  # connected, never sent a byte: uvicorn alone would keep it forever
    assert closed and got == b""


def test_a_body_sent_a_byte_a_second_is_answered_408_while_others_are_served(limited):
    slow = connect(limited)
    slow.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n")
    start = time.monotonic()
    for byte in b'{"pr':
        slow.sendall(bytes([byte]))
        answer = httpx.get(limited.url + "/health", timeout=5)  # the others keep being answered
        assert answer.status_code == 200
        time.sleep(1.0)
        if time.monotonic() - start > 2.5:
            break
    closed, got = closed_within(slow, 5)
    assert got.startswith(b"HTTP/1.1 408") and b"--body-timeout-s" in got and closed
    assert time.monotonic() - start < 8


def test_past_limit_concurrency_new_requests_are_503(limited):
    idle = [connect(limited) for _ in range(6)]  # open connections count against the limit
    try:
        time.sleep(0.2)
        answer = httpx.get(limited.url + "/health", timeout=5)
        assert answer.status_code == 503
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.3)
    assert httpx.get(limited.url + "/health", timeout=5).status_code == 200


def test_an_unfinished_request_head_over_max_header_kb_is_refused(limited):
    """h11's limit bounds the buffer of a head still arriving (a head that arrives whole is parsed at once)."""
    sock = connect(limited)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 6000)  # 6 KiB, no end: over 4 KiB
    closed, got = closed_within(sock, 3)  # uvicorn's default 16 KiB would wait for the rest
    assert got.startswith(b"HTTP/1.1 400") and closed
    small = connect(limited)
    small.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"p" * 2000)
    time.sleep(0.3)
    small.sendall(b"\r\n\r\n")
    assert closed_within(small, 3)[1].startswith(b"HTTP/1.1 200")
