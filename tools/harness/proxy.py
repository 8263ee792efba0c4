"""A fault-injecting HTTP/1.1 proxy between a board and the real service.

The service cannot produce 500s, 429s, stalls or a lost response on cue; this proxy can. It keeps
the board's connection alive like the service does, forwards each request over its own upstream
connection, and counts requests and bytes on the board's side of the wire (for the bench).
Faults are set by the test while the agent runs: `proxy.fault = Fault(...)`; `proxy.cut.set()` cuts
the boards' network (requests go unanswered until `cut.clear()`, as packets into a dead link).

`token_size` makes the boards see access tokens of that size, as an external issuer's RS256 JWTs
are (about 1 KB): each token the service issues is handed out padded to `token_size` characters,
and a request bearing a padded token goes on with the service's own, so the service checks the
tokens it signed while the boards cache, send and buffer the long ones.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO


@dataclass
class Fault:
    """What to do with requests whose path contains `path` (all when empty)."""

    status: int | None = None  # answer this instead of forwarding
    retry_after: int | None = None
    stall: bool = False  # forward, then send only half of the response and go silent
    hold: threading.Event | None = None  # forward, then wait for this before answering
    path: str = ""


@dataclass
class Exchange:
    at: float
    method: str
    path: str
    status: int
    tx: int  # bytes the board sent
    rx: int  # bytes the board received
    body: bytes = b""  # the upstream response body
    elapsed: float = 0.0  # s from the request's last byte in to the response's last byte out
    request: bytes = b""  # the request body the board sent


@dataclass
class FaultProxy:
    upstream_port: int
    fault: Fault | None = None
    log: list[Exchange] = field(default_factory=list)
    connections: int = 0
    forwarded: threading.Event = field(default_factory=threading.Event)
    cut: threading.Event = field(default_factory=threading.Event)
    token_size: int | None = None  # hand out access tokens padded to this size (see above)
    _padded: dict[str, str] = field(default_factory=dict)  # padded token -> the service's

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://localhost:{self.port}"
        self._stop = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop = True
        self._sock.close()

    def exchanges(self, path: str = "") -> list[Exchange]:
        with self._lock:
            return [e for e in self.log if path in e.path]

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        reader = client.makefile("rb")
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            while self._one(client, reader, upstream):
                pass
        except (OSError, http.client.HTTPException, ssl.SSLError):
            pass
        finally:
            upstream.close()
            client.close()

    def _one(
        self, client: socket.socket, rfile: BinaryIO, upstream: http.client.HTTPConnection
    ) -> bool:
        line = rfile.readline()
        if not line:
            return False
        tx = len(line)
        method, path, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            h = rfile.readline()
            tx += len(h)
            if h in (b"\r\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers[name.strip()] = value.strip()
        body = rfile.read(int(headers.get("Content-Length", "0")))
        tx += len(body)
        started = time.monotonic()
        if self.cut.is_set():
            # The link is down: no answer; the board times out and reconnects after the cut.
            while self.cut.is_set() and not self._stop:
                time.sleep(0.1)
            return False
        fault = self.fault if self.fault and self.fault.path in path else None
        if fault and fault.status:
            extra = f"Retry-After: {fault.retry_after}\r\n" if fault.retry_after is not None else ""
            payload = b'{"error":"injected"}'
            out = (
                f"HTTP/1.1 {fault.status} Injected\r\n{extra}Content-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload
            client.sendall(out)
            self._record(method, path, fault.status, tx, len(out))
            return True
        headers.pop("Host", None)
        bearer = headers.get("Authorization", "")
        if bearer.startswith("Bearer ") and bearer[7:] in self._padded:
            headers["Authorization"] = "Bearer " + self._padded[bearer[7:]]
        upstream.request(method, path, body=body, headers=headers)
        resp = upstream.getresponse()
        data = resp.read()
        if self.token_size and resp.status == 200 and path.endswith("/oauth/token"):
            data = self._pad(data, self.token_size)
        self.forwarded.set()
        head = f"HTTP/1.1 {resp.status} {resp.reason}\r\n"
        for name, value in resp.getheaders():
            if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                head += f"{name}: {value}\r\n"
        out = (head + f"Content-Length: {len(data)}\r\n\r\n").encode() + data
        if fault and fault.hold is not None:
            fault.hold.wait(30)
        if fault and fault.stall:
            client.sendall(out[: len(out) // 2])
            self._record(method, path, -1, tx, len(out) // 2)
            time.sleep(5)
            return False
        client.sendall(out)
        self._record(method, path, resp.status, tx, len(out), data, started, body)
        return True

    def _pad(self, data: bytes, size: int) -> bytes:
        """A token response with its access token padded to `size` characters (a JWT with a
        longer signature part), remembered for the requests that bear it."""
        answer = json.loads(data)
        real = answer["access_token"]
        padded = real + "x" * max(0, size - len(real))
        self._padded[padded] = real
        answer["access_token"] = padded
        return json.dumps(answer).encode()

    def _record(
        self,
        method: str,
        path: str,
        status: int,
        tx: int,
        rx: int,
        body: bytes = b"",
        started: float | None = None,
        request: bytes = b"",
    ) -> None:
        now = time.monotonic()
        took = now - started if started is not None else 0.0
        with self._lock:
            self.log.append(Exchange(now, method, path, status, tx, rx, body, took, request))
