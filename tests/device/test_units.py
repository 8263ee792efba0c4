"""Unit tests of the device modules, executed by the MicroPython Unix port.

Each MicroPython case is its own pytest test; one `micropython` run per script does them all.
The HTTP cases talk to a scripted fake server below (the real service is for tests/device's
integration tests; only a fake can send a malformed or stalled response on cue). The server
counts the connections and requests it sees and answers `/stats` with them, on a connection of
its own that it leaves out, so the cases check keep-alive on the wire, not by the client's word.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.device.harness import case_names, run_cases

pytestmark = pytest.mark.micropython

DATE = b"Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"

_RESPONSES: dict[str, bytes] = {
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n",
    "/close": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    "/429": b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n",
    "/503-date": b"HTTP/1.1 503 Service Unavailable\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
    b"Retry-After: Sun, 06 Nov 1994 08:50:07 GMT\r\nContent-Length: 0\r\n\r\n",
    "/401-bearer": b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer "
    b'error="invalid_token", error_description="expired"\r\nContent-Length: 0\r\n\r\n',
    "/401-json": b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n"
    b'Content-Type: application/json\r\nContent-Length: 26\r\n\r\n{"error":"invalid_client"}',
    "/500-html": b"HTTP/1.1 500 Oops\r\nContent-Length: 13\r\n\r\n<html></html>",
    "/big": b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"A" * 3000,
    "/long-header": b"HTTP/1.1 200 OK\r\nX-Long: "
    + b"y" * 1000
    + b"\r\nContent-Length: 2\r\n\r\nok",
}


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        counted = False
        while True:
            request = self.rfile.readline()
            if not request:
                return
            length = 0
            head = [request]
            while (line := self.rfile.readline()) not in (b"\r\n", b""):
                head.append(line)
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = self.rfile.read(length)
            path = request.split()[1].decode()
            if path == "/stats":
                out = b"%d %d" % (self.server.connections, self.server.requests)
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(out) + out)
                continue
            with self.server.lock:
                self.server.connections += not counted
                self.server.requests += 1
            counted = True
            if path == "/token-echo":
                # A token response whose access token is the request as received (head, body).
                seen = (b"".join(head) + b"\r\n" + body).decode()
                token = json.dumps({"access_token": seen, "token_type": "Bearer"}).encode()
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(token))
                self.wfile.write(token)
                continue
            if path == "/stall":
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                time.sleep(3)
                return
            if path in _RESPONSES:
                self.wfile.write(_RESPONSES[path])
            else:
                out = b"echo:" + body
                self.wfile.write(b"HTTP/1.1 200 OK\r\n" + DATE)
                self.wfile.write(b"Content-Length: %d\r\n\r\n" % len(out) + out)
            if path in ("/close", "/drop-after"):
                self.connection.shutdown(socket.SHUT_RDWR)
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    lock = threading.Lock()
    connections = 0  # that sent a request other than /stats
    requests = 0  # other than /stats


@pytest.fixture(scope="module")
def fake_http() -> Iterator[int]:
    server = _Server(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def unit_results(micropython: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return run_cases(micropython, "units.py", tmp_path_factory.mktemp("units"), {})


@pytest.fixture(scope="module")
def http_results(
    micropython: str, fake_http: int, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    env = {"PARK_FAKE_PORT": str(fake_http)}
    return run_cases(micropython, "httpcases.py", tmp_path_factory.mktemp("http"), env)


@pytest.mark.parametrize("name", case_names("units.py"))
def test_device_unit(name: str, unit_results: dict[str, str]) -> None:
    assert unit_results.get(name) == "ok", unit_results["_output"]


@pytest.mark.parametrize("name", case_names("httpcases.py"))
def test_device_http(name: str, http_results: dict[str, str]) -> None:
    assert http_results.get(name) == "ok", http_results["_output"]


def test_micropython_scripts_stay_out_of_pytest() -> None:
    # The MicroPython scripts are not CPython tests: keep their names off pytest's pattern.
    assert not list(Path(__file__).with_name("mp").glob("test_*.py"))
