"""`make bench`: the device agent under the MicroPython Unix port, against the real service.

- heap: the agent as shipped precompiled (.mpy) under `-X heapsize=64K`, through steady state, a
  service outage (kill -9) with readings piling up in the spool, and the replay. With config
  `debug_heap` the agent prints a `gc.mem_alloc()` sample once a second: "peak" before a
  collection (live data plus one loop's garbage), "live" right after it; the maxima are
  reported. The Unix port is 64-bit, so objects and pointers cost up to twice what they do on an
  ESP32, and its shims for `machine`/`network` (built in on a board) sit in the same heap: both
  are reported. Also the smallest heap that runs the agent from plain .py
  (compiled on the board at import), and the steady heap of a board that holds a 1,100-character
  access token (an external issuer's RS256 JWT) from a token endpoint on another origin.
- wire: HTTP bytes per reading in steady state (one reading per post, the kept-alive connection),
  counted by the fault proxy on the board's side, split into request and response.
- tokens: when the agent refreshes (over a few 10 s lifetimes), what a kill -9 and reboot costs
  (token.json is reused), and from those the requests per day at the default 1-day lifetime.
- crash reports: bytes on the wire and the heap a pending report costs (device/crash.py).
"""

from __future__ import annotations

import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from provisioning.parkctl.release.mpy import DEVICE_DIR, compile_dir
from tools.harness.agent import AgentProcess, Backend, board_config, micropython_env
from tools.harness.proxy import FaultProxy
from tools.harness.services import micropython_binary

HEAP_TARGET = 32 * 1024
_HEAP = re.compile(r"heap live ([0-9]+) peak ([0-9]+) now ([0-9]+)")


def _heap_samples(agent: AgentProcess) -> list[tuple[int, int, int]]:
    return [tuple(map(int, m.groups())) for m in _HEAP.finditer(agent.console())]  # type: ignore[misc]


def _shim_heap(micropython: str) -> int:
    """Heap the Unix-port stand-ins for machine and network take (zero on a board), loaded as
    the agent loads them: precompiled (from source every local name would be a qstr too)."""
    code = (
        "import gc; gc.collect(); a = gc.mem_alloc(); import machine, network; gc.collect(); "
        "print(gc.mem_alloc() - a)"
    )
    out = subprocess.run(
        [micropython, "-c", code],
        env=micropython_env(compiled=True),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def bench_heap_and_wire(micropython: str, root: Path) -> list[dict[str, Any]]:
    backend = Backend(root / "svc").start()
    rows: list[dict[str, Any]] = []
    try:
        dev, secret = backend.create_device()
        proxy = FaultProxy(backend.port)
        config = board_config(
            dev, secret, proxy.url, debug_heap=True, interval_s=0.25, health_every_s=60
        )
        agent = AgentProcess.on_new_board(micropython, root / "board", config).start()
        try:
            agent.wait_for(r"sent \d+ up to seq", count=4)
            start = len(proxy.exchanges("/v1/counts"))
            time.sleep(4)
            steady = [e for e in proxy.exchanges("/v1/counts")[start:] if e.status == 200]
            steady_live = [live for live, _, _ in _heap_samples(agent)]
            backend.stop(signal.SIGKILL)
            time.sleep(5)  # ~20 readings spool up
            backend.restart()
            agent.wait_for(r"sent (\d\d) up to seq", timeout=20)
            agent.wait_for(r"spool 0$", count=len(agent.lines(r"spool 0$")) + 3, timeout=20)
            samples = _heap_samples(agent)
        finally:
            agent.kill()
            proxy.close()
        assert "MemoryError" not in agent.console(), agent.console()
        shims = _shim_heap(micropython)
        rows.append(_gate_steady_heap(micropython, root, backend, shims=shims))
        rows.append(_rs256_steady_heap(micropython, root, backend, shims=shims))
        rows.append(_source_min_heap(micropython, root, backend))
        rows.append(_wire_batched(micropython, root, backend))
        peak = max(p for _, p, _ in samples)
        live = max(v for v, _, _ in samples)
        steady_now = max(steady_live)
        rows += [
            {"bench": "device", "metric": "heap_limit_bytes (-X heapsize)", "value": 65536},
            {"bench": "device", "metric": "heap_peak_bytes (outage+replay)", "value": peak},
            {"bench": "device", "metric": "heap_live_max_bytes (outage+replay)", "value": live},
            {
                "bench": "device",
                # With the Unix port's machine/network stand-ins, which a board has built in:
                # the target applies to the figure without them (below).
                "metric": "heap_steady_in_use_bytes (with the Unix-port stand-ins)",
                "value": steady_now,
            },
            {"bench": "device", "metric": "heap_unixport_shims_bytes", "value": shims},
            {
                "bench": "device",
                "metric": "heap_steady_in_use_without_shims_bytes",
                "value": steady_now - shims,
                "target": HEAP_TARGET,
                "ok": steady_now - shims < HEAP_TARGET,
            },
        ]
        n = len(steady)
        tx = sum(e.tx for e in steady) / n
        rx = sum(e.rx for e in steady) / n
        rows += [
            {"bench": "device", "metric": "wire_bytes_per_reading", "value": round(tx + rx)},
            {"bench": "device", "metric": "wire_request_bytes_per_reading", "value": round(tx)},
            {"bench": "device", "metric": "wire_response_bytes_per_reading", "value": round(rx)},
            {"bench": "device", "metric": "tcp_connections_total", "value": proxy.connections},
        ]
    finally:
        backend.stop()
    return rows


def _steady_row(agent: AgentProcess, shims: int, what: str) -> dict[str, Any]:
    """Start `agent` (a `debug_heap` board) and run it into steady state: its steady heap
    without the Unix-port shims, as a bench row against the 32 KB target."""
    agent.start()
    try:
        agent.wait_for(r"sent \d+ up to seq", count=4)
        start = len(_heap_samples(agent))
        time.sleep(4)
        steady = [live for live, _, _ in _heap_samples(agent)[start:]]
    finally:
        agent.kill()
    assert "MemoryError" not in agent.console(), agent.console()
    value = max(steady) - shims
    return {
        "bench": "device",
        "metric": f"heap_steady_in_use_without_shims_bytes ({what})",
        "value": value,
        "target": HEAP_TARGET,
        "ok": value < HEAP_TARGET,
    }


def _gate_steady_heap(micropython: str, root: Path, backend: Backend, shims: int) -> dict[str, Any]:
    """Steady heap (without the Unix-port shims) of a board posting gate readings:
    the file sensor reports counters "in out", so the spool and the body carry them."""
    dev, secret = backend.create_device()
    config = board_config(dev, secret, backend.url, debug_heap=True, interval_s=0.25)
    agent = AgentProcess.on_new_board(micropython, root / "gate-board", config)
    (agent.board / "cars.txt").write_text("4000000000 3999999990")
    return _steady_row(agent, shims, "gate readings")


def _rs256_steady_heap(
    micropython: str, root: Path, backend: Backend, shims: int
) -> dict[str, Any]:
    """Steady heap (without the Unix-port shims) of a board holding an access token of an
    external issuer's size (RS256, 1,100 characters, as an Auth0 token is) from a token endpoint
    on another origin than the ingest API: the fault proxy pads the service's tokens
    (tools/harness/proxy.py, `token_size`)."""
    dev, secret = backend.create_device()
    proxy = FaultProxy(backend.port, token_size=1100)
    token_base = f"http://127.0.0.1:{proxy.port}"  # proxy.url names localhost: another origin
    config = board_config(
        dev, secret, proxy.url, token_base=token_base, debug_heap=True, interval_s=0.25
    )
    agent = AgentProcess.on_new_board(micropython, root / "rs256-board", config)
    try:
        return _steady_row(agent, shims, "1,100-char RS256-sized token cached")
    finally:
        proxy.close()


def _wire_batched(micropython: str, root: Path, backend: Backend) -> dict[str, Any]:
    """HTTP bytes per reading when readings are collected into posts (upload_every_s)."""
    dev, secret = backend.create_device()
    proxy = FaultProxy(backend.port)
    config = board_config(dev, secret, proxy.url, interval_s=0.25, upload_every_s=2)
    agent = AgentProcess.on_new_board(micropython, root / "batched", config).start()
    try:
        agent.wait_for(r"sent \d+ up to seq", count=4, timeout=30)
    finally:
        agent.kill()
        proxy.close()
    posts = [e for e in proxy.exchanges("/v1/counts") if e.status == 200]
    readings = len(backend.seqs(dev))
    per = sum(e.tx + e.rx for e in posts) / readings
    return {
        "bench": "device",
        "metric": f"wire_bytes_per_reading (upload_every_s 2, ~{readings // len(posts)}/post)",
        "value": round(per),
    }


def _source_min_heap(micropython: str, root: Path, backend: Backend) -> dict[str, Any]:
    """The smallest heap (KB, in 8 KB steps from 64) in which the agent runs from plain .py.

    From source the board compiles each module at import, which fragments the heap; shipped as
    .mpy (the heap row above) it needs no compile step.
    """
    for kb in range(64, 136, 8):
        dev, secret = backend.create_device()
        config = board_config(dev, secret, backend.url, health_every_s=60)
        # Too small a heap ends in a MemoryError: this search crashes agents on purpose.
        agent = AgentProcess.on_new_board(
            micropython,
            root / f"source-{kb}",
            config,
            compiled=False,
            heap=f"{kb}K",
            allow_tracebacks=True,
        ).start()
        try:
            agent.wait_for(r"sent \d+ up to seq", count=10)
            ok = "MemoryError" not in agent.console()
        except AssertionError:
            ok = False
        finally:
            agent.kill()
        if ok:
            break
    return {"bench": "device", "metric": "heap_kb_needed_from_source (.py)", "value": kb}


def bench_tokens(micropython: str, root: Path, ttl: int = 10) -> list[dict[str, Any]]:
    """Token requests: the refresh point over a few short lifetimes, and the cost of a reboot."""
    backend = Backend(root / "svc-ttl", token_ttl=ttl).start()
    try:
        dev, secret = backend.create_device()
        config = board_config(dev, secret, backend.url, health_every_s=60)
        agent = AgentProcess.on_new_board(micropython, root / "ttl-board", config).start()
        try:
            agent.wait_for("token fetched", count=2, timeout=3 * ttl)
            time.sleep(ttl / 4)  # well inside the second token's lifetime
            before = backend.tokens_issued(dev)
            agent.kill()  # kill -9 and reboot: token.json must carry the token over
            agent.start()
            agent.wait_for(r"sent \d+ up to seq", count=len(agent.lines(r"sent \d+ up")) + 5)
            restart_cost = backend.tokens_issued(dev) - before
            agent.wait_for("token fetched", count=3, timeout=3 * ttl)
        finally:
            agent.kill()
        backend.tokens_issued(dev)  # lets the batched audit writer catch up
        sql = "SELECT at FROM audit_log WHERE action = 'token.issue' AND target = ? ORDER BY at"
        times = [float(at) for (at,) in backend.query(sql, dev)]
    finally:
        backend.stop()
    gap = (times[-1] - times[0]) / (len(times) - 1)
    # The agent refreshes 1 s (the Date header's resolution) before the last tenth of a lifetime:
    # at this short lifetime that second weighs 10 %, at the default day it is nothing.
    day = 86400
    per_day = day / (0.9 * day - 1)
    return [
        {
            "bench": "device",
            "metric": f"token_refresh_after_s (ttl {ttl} s)",
            "value": round(gap, 2),
        },
        {"bench": "device", "metric": "token_requests_per_reboot", "value": restart_cost},
        {
            "bench": "device",
            "metric": "token_requests_per_day (1-day lifetime, refresh at 90 %)",
            "value": round(per_day, 2),
            "target": 1,
            "ratio": round(per_day, 2),
            "ok": restart_cost == 0 and abs(gap - (0.9 * ttl - 1)) < 1,
        },
    ]


# Under the Unix port, in a board directory: a crash with a traceback of `depth` frames, then
# what the next boot holds and sends. Prints "<wire bytes> <held bytes> <peak bytes>".
_CRASH_SCRIPT = """
import gc, sys
import cold, crash
def f(n):
    if n:
        return f(n - 1)
    raise OSError("ECONNRESET on the ingest connection")
try:
    f(%d)
except OSError as e:
    crash.store(e)
cold.drop(crash)
del crash
gc.collect()
before = gc.mem_alloc()
import crash
report = crash.load("power_on")
peak = gc.mem_alloc()
cold.drop(crash)
del crash
gc.collect()
print(len(report), gc.mem_alloc() - before, peak - before)
"""


def bench_crash(micropython: str, root: Path) -> list[dict[str, Any]]:
    """A crash report: its bytes in the counts body (`,"crash":{...}`), and its heap cost on the
    board: what stays held until a post carrying it is answered (the report, the qstrs that
    loading crash.py interns for good) and the peak while it is loaded at boot. For a short
    traceback (3 frames) and one cut to the 600-character bound (30 frames)."""
    env = micropython_env(compiled=True)
    env["MICROPYPATH"] = f"{compile_dir(DEVICE_DIR)}:{env['MICROPYPATH']}"
    rows: list[dict[str, Any]] = []
    for depth in (3, 30):
        board = root / f"crash-{depth}"
        board.mkdir()
        (board / "state").write_text("app_a 1.1.0 - - - -")
        out = subprocess.run(
            [micropython, "-X", "heapsize=64K", "-c", _CRASH_SCRIPT % depth],
            cwd=board,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        wire, held, peak = (int(v) for v in out.stdout.split()[-3:])
        what = f"crash report, traceback of {depth} frames"
        rows += [
            {"bench": "device", "metric": f"{what}: bytes on the wire", "value": wire},
            {"bench": "device", "metric": f"{what}: heap held until answered", "value": held},
            {"bench": "device", "metric": f"{what}: heap peak while loading", "value": peak},
        ]
    return rows


def run() -> list[dict[str, Any]]:
    """Bench rows for the device agent (see the module docstring)."""
    micropython = micropython_binary()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        return [
            *bench_heap_and_wire(micropython, root),
            *bench_tokens(micropython, root),
            *bench_crash(micropython, root),
        ]


if __name__ == "__main__":
    for row in run():
        print(row)
