"""A small HTTP/1.1 load generator for loopback benchmarks, run as its own process.

N keep-alive connections, each a closed loop (send a request, read the whole response, send the
next), written on raw asyncio protocols (uvloop when installed) because an HTTP client library
would be the bottleneck before the server is. Requests are pre-built bytes: one list, each
connection cycling through its share, so per-connection credentials cost nothing at run time.

    python -m tools.bench.loadgen --spec spec.json      # prints a JSON result on stdout

spec.json: {"host", "port", "requests": ["<raw request>", ...], "connections", "total",
"duration", "warmup"}; the result: {"requests", "seconds", "rps", "p50_ms", "p99_ms",
"statuses": {"200": n, ...}, "errors", "sent", "cpu_s"} (`cpu_s`: this process's own CPU
seconds over the whole run, warm-up included, like `sent`: what the load itself cost the
machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast


@dataclass
class Tally:
    """Shared counters of one run."""

    total: int
    deadline: float
    record_from: float
    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0

    def next_slot(self) -> bool:
        if self.sent >= self.total or time.perf_counter() >= self.deadline:
            return False
        self.sent += 1
        return True


class Connection(asyncio.Protocol):
    """One keep-alive connection running requests back to back."""

    def __init__(self, requests: list[bytes], tally: Tally, done: asyncio.Future[None]) -> None:
        self.requests = requests
        self.index = 0
        self.tally = tally
        self.done = done
        self.buffer = bytearray()
        self.started = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.send_next()

    def send_next(self) -> None:
        assert self.transport is not None
        if not self.tally.next_slot():
            self.transport.close()
            if not self.done.done():
                self.done.set_result(None)
            return
        request = self.requests[self.index]
        self.index = (self.index + 1) % len(self.requests)
        self.started = time.perf_counter()
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            status = int(head[9:12])
            now = time.perf_counter()
            if self.started >= self.tally.record_from:
                self.tally.latencies.append(now - self.started)
                self.tally.statuses[status] = self.tally.statuses.get(status, 0) + 1
            self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if self.tally.sent < self.tally.total and time.perf_counter() < self.tally.deadline:
                self.tally.errors += 1
            self.done.set_result(None)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the load described by `spec` (see the module docstring) and summarise it."""
    requests = [r.encode("latin-1") if isinstance(r, str) else r for r in spec["requests"]]
    connections = int(spec.get("connections", 64))
    warmup = float(spec.get("warmup", 0.5))
    start = time.perf_counter()
    tally = Tally(
        total=int(spec.get("total", 10**9)),
        deadline=start + warmup + float(spec.get("duration", 5.0)),
        record_from=start + warmup,
    )
    cpu_before = time.process_time()
    loop = asyncio.get_running_loop()
    waits = []
    for n in range(connections):
        # Each connection cycles through its own slice, so they do not share credentials.
        mine = requests[n::connections] or requests
        done: asyncio.Future[None] = loop.create_future()
        await loop.create_connection(
            lambda mine=mine, done=done: Connection(mine, tally, done),  # type: ignore[misc]
            spec.get("host", "127.0.0.1"),
            int(spec["port"]),
        )
        waits.append(done)
    try:
        # A server that stops answering must not hang the benchmark.
        await asyncio.wait_for(asyncio.gather(*waits), tally.deadline - time.perf_counter() + 10)
    except TimeoutError:
        tally.errors += sum(1 for w in waits if not w.done())
    seconds = time.perf_counter() - tally.record_from
    lat = sorted(tally.latencies)
    count = len(lat)
    return {
        "requests": count,
        "seconds": round(seconds, 3),
        "rps": round(count / seconds, 1) if seconds > 0 else 0.0,
        "p50_ms": round(statistics.median(lat) * 1000, 2) if lat else None,
        "p99_ms": round(lat[min(count - 1, int(count * 0.99))] * 1000, 2) if lat else None,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": tally.errors,
        "sent": tally.sent,  # including the warm-up
        "cpu_s": round(time.process_time() - cpu_before, 3),
    }


def build_request(
    method: str, path: str, host: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> str:
    """A raw HTTP/1.1 keep-alive request (latin-1 text, as JSON specs carry it)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return "\r\n".join(lines) + "\r\n\r\n" + body.decode("latin-1")


def run_in_process(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `spec` in a separate Python process (so it does not share a core's GIL with the
    caller) and return its result."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(spec, file)
        file.flush()
        # As a module from the repository root: run as a script, this file's directory would
        # come first on sys.path and its neighbour `token.py` would hide the standard library's.
        out = subprocess.run(
            [sys.executable, "-m", "tools.bench.loadgen", "--spec", file.name],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=float(spec.get("duration", 5.0)) + float(spec.get("warmup", 0.5)) + 30,
        )
    if out.returncode != 0:
        raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON file describing the load")
    args = parser.parse_args()
    with open(args.spec) as file:
        spec = json.load(file)
    try:
        import uvloop

        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
