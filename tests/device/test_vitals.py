"""The agent's health vitals, crash reports and long access tokens, end to end: the real agent
under the MicroPython Unix port against the real service (through the fault proxy where the test
reads what the board sent)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.device.harness import assert_contiguous, wait_until
from tools.harness.agent import AgentProcess, Backend, board_config
from tools.harness.proxy import FaultProxy

pytestmark = pytest.mark.micropython


def _sent(proxy: FaultProxy, key: str) -> list[dict[str, object]]:
    """The `key` objects of the counts bodies the board sent that the service answered 200."""
    bodies = [json.loads(e.request) for e in proxy.exchanges("/v1/counts") if e.status == 200]
    return [b[key] for b in bodies if key in b]


def test_health_tells_interval_spool_after_the_post_and_vitals(
    micropython: str, backend: Backend, tmp_path: Path
) -> None:
    """A healthy uploading board reports spool_depth 0 and its interval (whole seconds, rounded
    up); the vitals ride along; the health part stays within 200 bytes."""
    dev, secret = backend.create_device()
    proxy = FaultProxy(backend.port)
    # Health with every other post or so, a reading every 0.3 s (interval_s 1 when rounded up).
    config = board_config(dev, secret, proxy.url, interval_s=0.3, health_every_s=0.5)
    agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config)
    try:
        agent.start().wait_for(r"sent \d+ up to seq", count=8)
    finally:
        agent.kill()
        proxy.close()
    reports = _sent(proxy, "health")
    assert len(reports) >= 3, reports
    for h in reports:
        assert h["interval_s"] == 1 and h["spool_depth"] == 0, h
        assert h["rssi_min"] == -60 and h["heap_min"] > 0 and h["reset_cause"] == "power_on", h
        assert not {"post_fails", "token_fails", "wifi_drops"} & h.keys(), "none failed"
    for e in proxy.exchanges("/v1/counts"):
        part = e.request[e.request.find(b',"health"') :].split(b"}", 1)[0] + b"}"
        assert len(part) <= 200 or b'"health"' not in e.request, part
    stored = backend.health(dev)
    assert stored["interval_s"] == 1 and stored["spool_depth"] == 0, stored


_FAULTY_SENSOR = """
class FileSensor:
    # A test sensor with deliberate faults: "boom" in its file raises, "leak" eats the heap.
    def __init__(self, path):
        self.path = path

    def read(self):
        with open(self.path) as f:
            v = f.read().strip()
        if v == "boom":
            raise RuntimeError("test sensor fault")
        if v == "leak":
            hoard = []
            while True:  # until the heap is gone: a MemoryError
                hoard.append(bytearray(512))
        return int(v)
"""


def test_crash_report_survives_the_reset_and_is_cleared_once_answered(
    micropython: str, backend: Backend, tmp_path: Path
) -> None:
    """An exception raised by a (deliberately faulty) sensor crashes the agent: the next boot
    reports it with its traceback, the count adds up over two crashes, a 200 clears it, and no
    reading is lost. Then a watchdog reset (the Unix-port stand-in's reset cause) is one too."""
    dev, secret = backend.create_device()
    proxy = FaultProxy(backend.port)
    config = board_config(dev, secret, proxy.url)
    # From source (a test copy of the agent with the faulty sensor), crashing on purpose.
    agent = AgentProcess.on_new_board(
        micropython, tmp_path / "board", config, compiled=False, allow_tracebacks=True
    )
    (agent.board / "sensor.py").write_text(_FAULTY_SENSOR)
    env = dict(agent.env, PARKSIM_RESET_EXIT="0")
    agent.env = env
    cars = agent.board / "cars.txt"
    crash_file = agent.board / "crash"
    try:
        cars.write_text("3")
        agent.start()
        agent.wait_for(r"sent \d+ up to seq", count=2)
        cars.write_text("boom")  # a crash at the next reading
        agent.wait_for("crashed: RuntimeError")
        wait_until(lambda: agent.proc is not None and agent.proc.poll() is not None, 20)
        assert crash_file.read_bytes().startswith(b"1 exception -\n"), crash_file.read_bytes()
        agent.start()  # and again at the first reading, before any post: the count adds up
        agent.wait_for("crashed: RuntimeError", count=2)
        wait_until(lambda: agent.proc is not None and agent.proc.poll() is not None, 20)
        assert crash_file.read_bytes().startswith(b"2 exception -\n"), crash_file.read_bytes()
        cars.write_text("4")
        agent.start()
        agent.wait_for(r"sent \d+ up to seq", count=len(agent.lines(r"sent \d+ up")) + 3)
        wait_until(lambda: not crash_file.exists(), what="the crash file cleared after a 200")
        agent.kill()
        crashes = _sent(proxy, "crash")
        assert len(crashes) == 1, "sent until answered, then no more"
        c = crashes[0]
        assert c["count"] == 2 and c["cause"] == "exception" and c["version"] is None, c
        tb = str(c["traceback"])
        assert len(tb) <= 600 and tb.endswith("RuntimeError: test sensor fault\n"), tb
        assert 'File "sensor.py"' in tb, tb

        # A watchdog reset: reported at the next boot, with no traceback.
        agent.env = dict(env, PARKSIM_RESET_CAUSE="watchdog")
        agent.start()
        agent.wait_for(r"sent \d+ up to seq", count=len(agent.lines(r"sent \d+ up")) + 2)
    finally:
        agent.kill()
        proxy.close()
    crashes = _sent(proxy, "crash")
    assert crashes[-1] == {"version": None, "count": 1, "cause": "watchdog", "traceback": ""}
    assert_contiguous(backend.seqs(dev))


def test_memory_error_is_a_crash_report_too(
    micropython: str, backend: Backend, tmp_path: Path
) -> None:
    """A sensor that eats the heap: the MemoryError is recorded in the heap it left (cause
    "memory") and reported after the reset."""
    dev, secret = backend.create_device()
    proxy = FaultProxy(backend.port)
    agent = AgentProcess.on_new_board(
        micropython,
        tmp_path / "board",
        board_config(dev, secret, proxy.url),
        compiled=False,
        allow_tracebacks=True,
        env={"PARKSIM_RESET_EXIT": "0"},
    )
    (agent.board / "sensor.py").write_text(_FAULTY_SENSOR)
    cars = agent.board / "cars.txt"
    try:
        cars.write_text("leak")
        agent.start()
        agent.wait_for("crashed: MemoryError")
        wait_until(lambda: agent.proc is not None and agent.proc.poll() is not None, 20)
        cars.write_text("5")
        agent.start()
        agent.wait_for(r"sent \d+ up to seq", count=2)
    finally:
        agent.kill()
        proxy.close()
    c = _sent(proxy, "crash")[0]
    assert c["cause"] == "memory" and c["count"] == 1, c
    assert str(c["traceback"]).endswith("\n") and "MemoryError" in str(c["traceback"]), c


@pytest.mark.parametrize("size", [1100, 2048])
def test_long_token_on_another_origin(
    micropython: str, backend: Backend, tmp_path: Path, size: int
) -> None:
    """An access token of an external issuer's size (RS256: ~1.1 KB, and the 2 KB bound), from a
    token endpoint on another origin than the ingest API: fetched, cached, sent with every post
    at a 64 KB heap, and reused from token.json after a kill -9."""
    dev, secret = backend.create_device()
    proxy = FaultProxy(backend.port, token_size=size)
    # Two origins (host names differ) through one proxy, which pads the service's tokens.
    config = board_config(
        dev, secret, proxy.url, token_base=f"http://127.0.0.1:{proxy.port}", debug_heap=True
    )
    agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config).start()
    try:
        agent.wait_for(r"sent \d+ up to seq", count=4)
        cached = json.loads((agent.board / "token.json").read_text())["access_token"]
        assert len(cached) == size
        first = agent.console()
        agent.kill()
        agent.start()
        wait_until(lambda: len(agent.console()) > len(first) + 10, what="restart")
        agent.wait_for(r"sent \d+ up to seq", count=len(agent.lines(r"sent \d+ up")) + 3)
        time.sleep(1)
    finally:
        agent.kill()
        proxy.close()
    assert "token fetched" not in agent.console()[len(first) :], "token.json reused"
    assert backend.tokens_issued(dev) == 1
    token_posts = proxy.exchanges("/oauth/token")
    assert len(token_posts) == 1 and token_posts[0].status == 200
    assert_contiguous(backend.seqs(dev))
