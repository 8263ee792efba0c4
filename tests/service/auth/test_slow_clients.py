"""Slow clients against the real service process.

Connections that send a request head or body too slowly (or never finish it) are closed within
the configured deadlines, a source cannot hold more than its share of connections, and none of
it logs a traceback.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tools.harness.server import ServiceProcess

HEAD_S = 1.0
BODY_S = 1.5
PER_SOURCE = 24
SLACK_S = 4.0  # a loaded 2-core machine; the point is "closed", not "held for ever"


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.settimeout(0.2)
    return sock


def _closed_after(sock: socket.socket, until: float) -> tuple[float, bytes]:
    """Read until the server closes: (when, what it sent); fails past `until`."""
    got = b""
    while time.monotonic() < until:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return time.monotonic(), got
        if not chunk:
            return time.monotonic(), got
        got += chunk
    raise AssertionError(f"connection still open (got {got[:80]!r})")


def test_slow_heads_and_bodies_are_cut_off_and_sources_capped(tmp_path: Path) -> None:
    env = {
        "PARK_HEADER_TIMEOUT_S": str(HEAD_S),
        "PARK_BODY_TIMEOUT_S": str(BODY_S),
        "PARK_MAX_CONNECTIONS_PER_SOURCE": str(PER_SOURCE),
    }
    with ServiceProcess(tmp_path / "data", env=env) as service:
        port = service.port
        head = b"POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        started = time.monotonic()
        silent = [_connect(port) for _ in range(4)]
        partial_head = [_connect(port) for _ in range(4)]
        for sock in partial_head:
            sock.sendall(head)
        short_body = [_connect(port) for _ in range(4)]
        for sock in short_body:
            sock.sendall(head + b"Content-Length: 100\r\n\r\n" + b'{"grant_typ')  # 11 of 100
        # A trickle: one byte of head every 0.2 s never earns more time.
        trickle = _connect(port)
        deadline = started + HEAD_S + SLACK_S
        trickled = head + b"X-Padding: " + b"a" * 200
        closed_at = None
        for byte in trickled:
            try:
                trickle.sendall(bytes([byte]))
            except OSError:
                closed_at = time.monotonic()
                break
            time.sleep(0.2)
            if time.monotonic() > deadline:
                break
        if closed_at is None:
            closed_at, _ = _closed_after(trickle, deadline)
        assert closed_at - started <= HEAD_S + SLACK_S

        for sock in silent + partial_head:
            when, got = _closed_after(sock, started + HEAD_S + SLACK_S)
            assert when - started >= HEAD_S * 0.9
            assert got == b"" or got.startswith(b"HTTP/1.1 408")
        for sock in short_body:
            when, got = _closed_after(sock, started + BODY_S + SLACK_S)
            assert got.startswith(b"HTTP/1.1 408"), got
            assert b'"error":"invalid_request"' in got

        # The per-source cap: the connections beyond it are closed at once.
        held = [_connect(port) for _ in range(PER_SOURCE)]
        time.sleep(0.3)
        extra = [_connect(port) for _ in range(5)]
        for sock in extra:
            when, got = _closed_after(sock, time.monotonic() + 2.0)
            assert got == b""
        for sock in held:
            sock.close()
        for sock in silent + partial_head + short_body + extra + [trickle]:
            sock.close()
        time.sleep(0.5)

        # A client that goes away mid-body: one line, no traceback; the service still serves.
        gone = _connect(port)
        gone.sendall(head + b"Content-Length: 100\r\n\r\n" + b'{"grant_typ')
        time.sleep(0.3)
        gone.close()
        time.sleep(0.5)
        with service.client() as http:
            assert http.get("/healthz").status_code == 200
    log = service.log()
    assert "Traceback" not in log, log
    assert log.count("disconnected during POST /oauth/token") == 1, log
    assert log.count("408 to 127.0.0.1") == 4 + 4 + 4 + 1, log  # one line each, no more
    assert log.count("refusing more") == 1, log
