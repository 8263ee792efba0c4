"""`make bench`: agent releases and over-the-air updates, against the real service.

- signature: ES256 verification by the board's pure-MicroPython P-256 (device/p256.py, as .mpy)
  under the Unix port with `-X heapsize=64K`: median time of several checks, the bytes one
  check allocates in all (collector off: short-lived big integers, freed as it goes), and its
  peak heap: the smallest `-X heapsize`, to HEAP_STEP bytes, in which importing p256 and one
  check still run (the peak live heap, fragmentation included), beside the heap in use once
  p256 is imported; beside them the host's `cryptography` (OpenSSL) on the same input. The Unix
  port is 64-bit: an ESP32's objects are about half the size;
- download: the bytes one update moves, from a built bundle (manifest, signature and every
  module) and on the wire, per board of the rollout below (through tools/harness/proxy.py:
  every response to the board under /v1/releases/, HTTP headers included);
- update heap: the smallest heap (KB, 4 KB steps) in which a board installs an offered update
  (at boot, before the agent's parts are built: device/ota.py), from the release layout that
  `parkctl` installs, against the real service;
- rollout: wall time from `parkctl rollout start` (1 canary, 3 s canary wait) to three boards
  on the Unix port all confirmed, against the real service. The boards post every 0.2 s (the
  harness's config): on a real lot the posting interval adds to each board's time.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from provisioning.common import bundle
from provisioning.parkctl.release.mpy import DEVICE_DIR, compile_dir
from tools.harness.agent import (
    AgentProcess,
    Backend,
    RebootingBoard,
    board_config,
    make_board,
    micropython_env,
)
from tools.harness.parkctl import parkctl
from tools.harness.proxy import FaultProxy
from tools.harness.services import micropython_binary

_SCRIPT = """
import gc, time, binascii, p256
d, s, k = [binascii.unhexlify(x) for x in %r]
ts = []
for _ in range(%d):
    gc.collect()
    t = time.ticks_us()
    ok = p256.verify(d, s, k)
    ts.append(time.ticks_diff(time.ticks_us(), t))
    assert ok
gc.collect()
a = gc.mem_alloc()
if %d:  # the bytes one check allocates, with the collector off (needs a big heap)
    gc.disable()
    p256.verify(d, s, k)
print("RESULT", sorted(ts)[len(ts) // 2], gc.mem_alloc() - a, a)
"""
HEAP_STEP = 256  # bytes: the precision of the smallest heap the check runs in


def _vector(root: Path) -> tuple[list[str], Any, bytes, bytes]:
    key_path = root / "bench.key"
    bundle.keygen(key_path)
    private = bundle.load_private(key_path)
    message = b"x" * 2000  # about a manifest's size
    sig = bundle.sign(private, message)
    pub = bundle.board_key(private.public_key())
    return [hashlib.sha256(message).hexdigest(), sig.hex(), pub], private, message, sig


def _board_verify(
    micropython: str, vec: list[str], heap: str, n: int = 9, alloc: bool = False
) -> tuple[int, int, int]:
    """(median check time in us, bytes allocated by one check with `alloc`, heap in use
    before the check) under the Unix port with `-X heapsize=heap`; RuntimeError if it fails."""
    env = micropython_env()
    env["MICROPYPATH"] = f"{compile_dir(DEVICE_DIR)}:{env['MICROPYPATH']}"
    done = subprocess.run(
        [micropython, "-X", f"heapsize={heap}", "-c", _SCRIPT % (vec, n, alloc)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT"):
            _, us, spent, before = line.split()
            return int(us), int(spent), int(before)
    raise RuntimeError(f"p256 under the Unix port failed: {done.stdout}{done.stderr}")


def bench_signature(micropython: str, root: Path) -> list[dict[str, Any]]:
    vec, private, message, sig = _vector(root)
    us, _, loaded = _board_verify(micropython, vec, "64K")
    alloc = _board_verify(micropython, vec, "4M", n=1, alloc=True)[1]
    smallest = _smallest_heap(micropython, vec)
    host = []
    for _ in range(9):
        t = time.perf_counter()
        assert bundle.verify(private.public_key(), message, sig)
        host.append((time.perf_counter() - t) * 1e6)
    host_us = statistics.median(host)
    board_ms, host_ms = us / 1000, host_us / 1000
    return [
        _row("signature_check_ms (Unix port, p256.py)", board_ms),
        {**_row("signature_check_ms (host OpenSSL)", host_ms), "ratio": round(us / host_us, 1)},
        _row("signature_check_alloc_bytes (gc off)", alloc),
        _row("signature_check_peak_heap_bytes (smallest heap it runs in)", smallest),
        _row("  of which in use before it (p256 imported)", loaded),
    ]


def _smallest_heap(micropython: str, vec: list[str]) -> int:
    """The smallest `-X heapsize` (bytes, to HEAP_STEP) in which one check runs: bisection
    between a heap too small for it and 64 KB, where it runs."""
    low, high = 0, 64 * 1024  # fails at low (nothing runs in no heap), runs at high
    while high - low > HEAP_STEP:
        mid = (low + high) // 2 // HEAP_STEP * HEAP_STEP
        try:
            _board_verify(micropython, vec, str(mid), n=1)
        except RuntimeError:
            low = mid
        else:
            high = mid
    return high


def _row(metric: str, value: Any) -> dict[str, Any]:
    return {"bench": "release", "metric": metric, "value": value}


def bench_download(root: Path) -> list[dict[str, Any]]:
    """The bytes of one update's bodies, from a built bundle."""
    key = root / "release.key"
    bundle.keygen(key)
    out = bundle.build("1.0.0", key, root / "bundle")
    manifest = json.loads((out / bundle.MANIFEST).read_bytes())
    files = sum(e["size"] for e in manifest["files"])
    total = files + len((out / bundle.MANIFEST).read_bytes()) + 64
    return [
        _row("update_download_bytes (bodies, from the bundle)", total),
        _row("update_modules", len(manifest["files"])),
    ]


def bench_update_heap(micropython: str, root: Path) -> list[dict[str, Any]]:
    """The smallest heap in which a board installs an update it was offered (the file "update"
    that the agent writes before it resets): the download, the signature and hash checks and
    the switch, run once by `main.py` at boot."""
    key = root / "heap.key"
    bundle.keygen(key)
    b1 = bundle.build("1.0.0", key, root / "h1")
    b2 = bundle.build("1.1.0", key, root / "h2")
    backend = Backend(root / "svc-heap", extra_args=["--release-key", f"{key}.pub"]).start()
    smallest = None
    try:
        client_id, secret = backend.create_operator()
        env = {**os.environ, "PARK_SERVER": backend.url, "PARK_CLIENT_ID": client_id}
        env |= {"PARK_CLIENT_SECRET": secret, "PARK_CACHE_DIR": str(root / "cache-heap")}
        done = parkctl("release", "publish", str(b2), env=env)
        assert done.returncode == 0, done.stderr
        dev, dev_secret = backend.create_device()
        config = board_config(dev, dev_secret, backend.url)
        for kb in range(24, 68, 4):
            board = make_board(root / f"heap-{kb}", config, release=b1)
            (board / "update").write_bytes(b"1.1.0")
            # Too small a heap ends in a MemoryError: this search crashes agents on purpose.
            agent = AgentProcess(
                micropython, board, heap=f"{kb}K", compiled=True, allow_tracebacks=True
            ).start()
            try:
                agent.wait_for("installed in app_b|failed|refused|Error", timeout=60)
            except AssertionError:
                pass
            finally:
                agent.kill()
            if "installed in app_b" in agent.console():
                smallest = kb
                break
    finally:
        backend.stop()
    return [_row("update_min_heap_kb (installed at boot, Unix port)", smallest)]


def bench_rollout(micropython: str, root: Path) -> list[dict[str, Any]]:
    key = root / "roll.key"
    bundle.keygen(key)
    b1 = bundle.build("1.0.0", key, root / "r1")
    b2 = bundle.build("1.1.0", key, root / "r2")
    backend = Backend(root / "svc", extra_args=["--release-key", f"{key}.pub"]).start()
    # Each board through its own proxy: the bytes it receives, counted on its side of the wire.
    proxies: list[FaultProxy] = []
    boards: list[RebootingBoard] = []
    try:
        client_id, secret = backend.create_operator()
        env = {**os.environ, "PARK_SERVER": backend.url, "PARK_CLIENT_ID": client_id}
        env |= {"PARK_CLIENT_SECRET": secret, "PARK_CACHE_DIR": str(root / "cache")}
        ids = []
        for i in range(3):
            dev, dev_secret = backend.create_device()
            proxies.append(FaultProxy(backend.port))
            config = board_config(dev, dev_secret, proxies[-1].url)
            boards.append(RebootingBoard(micropython, root / f"b{i}", config, b1).start())
            ids.append(dev)
        done = parkctl("release", "publish", str(b2), env=env)
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(len(backend.seqs(d)) for d in ids):
            time.sleep(0.2)
        started = time.monotonic()
        args = ["rollout", "start", "1.1.0", "--devices", ",".join(ids), "--canary", "1"]
        done = parkctl(*args, "--canary-wait", "3s", "--silence", "60s", env=env)
        assert done.returncode == 0, done.stderr
        finished = None
        while time.monotonic() < started + 180:
            rows = backend.query(
                "SELECT count(*) FROM device_agent WHERE version = '1.1.0' AND state = 'confirmed'"
            )
            if rows[0][0] == 3:
                finished = time.monotonic() - started
                break
            time.sleep(0.2)
        received = [sum(e.rx for e in p.exchanges("/v1/releases/")) for p in proxies]
    finally:
        for board in boards:
            board.stop()
        for proxy in proxies:
            proxy.close()
        backend.stop()
    took = round(finished, 1) if finished else None
    return [
        _row("update_download_bytes (on the wire per board, with headers)",
             int(statistics.median(received))),
        _row("rollout_start_to_all_confirmed_s (3 boards, 0.2 s posts, 3 s wait)", took),
    ]  # fmt: skip


def run() -> list[dict[str, Any]]:
    """Bench rows for releases and updates (see the module docstring)."""
    micropython = micropython_binary()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rows = bench_signature(micropython, root)
        rows += bench_download(root)
        rows += bench_update_heap(micropython, root)
        rows += bench_rollout(micropython, root)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
