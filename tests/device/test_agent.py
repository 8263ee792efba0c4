"""The real agent under the MicroPython Unix port against the real service, with faults injected.

Every assertion about delivery comes from the service's own store: readings contiguous from seq 0
(nothing lost), each once (nothing doubled), and token issuance from the audit log.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.device.harness import assert_contiguous, wait_until, write_old_spool
from tools.harness.agent import AgentProcess, Backend, board_config
from tools.harness.pki import make_pki
from tools.harness.proxy import Fault, FaultProxy

pytestmark = pytest.mark.micropython


def _no_secret(agent: AgentProcess, secret: str) -> None:
    console = agent.console()
    for part in (secret, secret[:8], secret[-8:]):
        assert part not in console, "the client secret (or part of it) reached the console"
    assert "Traceback" not in console, console


def test_faults_kill_and_restart_lose_nothing(
    micropython: str, backend: Backend, tmp_path: Path
) -> None:
    """500s, 429 + Retry-After, a stall mid-response and kill -9 mid-send: every seq once."""
    dev, secret = backend.create_device()
    proxy = FaultProxy(backend.port)
    config = board_config(dev, secret, proxy.url, http_timeout_s=0.5)
    agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config).start()
    try:
        agent.wait_for(r"sent \d+ up to seq", count=3)

        proxy.fault = Fault(status=500, path="/v1/counts")
        agent.wait_for("upload refused: 500", count=2)
        started = time.monotonic()
        time.sleep(1.5)
        during = [e for e in proxy.exchanges("/v1/counts") if e.at >= started]
        # Exponential backoff (base 0.2 s, cap 1 s): a handful of attempts, not one per reading.
        assert 1 <= len(during) <= 10, len(during)

        proxy.fault = Fault(status=429, retry_after=1, path="/v1/counts")
        agent.wait_for("upload refused: 429", count=3, timeout=10)
        refused = [e.at for e in proxy.exchanges("/v1/counts") if e.status == 429]
        gaps = [b - a for a, b in itertools.pairwise(refused)]
        assert min(gaps) >= 0.95, f"Retry-After not honoured: {gaps}"

        proxy.fault = Fault(status=413, path="/v1/counts")  # too large: halve the batch
        agent.wait_for(r"upload refused: 413 .*, batch now 10")

        proxy.fault = Fault(stall=True, path="/v1/counts")
        agent.wait_for(r"upload failed: OSError", timeout=10)
        proxy.fault = None
        agent.wait_for(r"sent \d+ up to seq \d+, spool 0", count=4)

        # kill -9 while a batch is at the server and its answer is on the way.
        hold = threading.Event()
        proxy.forwarded.clear()
        proxy.fault = Fault(hold=hold, path="/v1/counts")
        time.sleep(0.3)
        proxy.forwarded.clear()
        assert proxy.forwarded.wait(10)
        agent.kill()
        hold.set()
        proxy.fault = None
        resent_from = len(proxy.exchanges("/v1/counts"))
        first_run = agent.console()
        agent.start()
        wait_until(lambda: len(agent.console()) > len(first_run) + 10, what="restart")
        agent.wait_for(r"sent \d+ up to seq", count=len(agent.lines(r"sent \d+ up")) + 3)
    finally:
        agent.kill()
        proxy.close()
    # The batch the server stored but the board never saw acknowledged went again: duplicates.
    answers = [json.loads(e.body) for e in proxy.exchanges("/v1/counts")[resent_from:]]
    # (the held answer itself may still be logged: it went into a dead socket's buffer)
    assert any(a["duplicates"] >= 1 for a in answers[:3]), answers[:3]
    second_run = agent.console()[len(first_run) :]
    assert "token fetched" not in second_run, "the restart did not reuse token.json"
    assert backend.tokens_issued(dev) == 1
    assert_contiguous(backend.seqs(dev))
    _no_secret(agent, secret)


def test_service_down_spools_and_replays(
    micropython: str, backend: Backend, tmp_path: Path
) -> None:
    dev, secret = backend.create_device()
    config = board_config(dev, secret, backend.url)
    agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config).start()
    try:
        agent.wait_for(r"sent \d+ up to seq", count=2)
        backend.stop(signal.SIGKILL)  # a crash: no graceful drain of the kept-alive connection
        before = len(agent.lines("backoff"))
        sent_before = len(agent.lines(r"sent \d+ up to seq"))
        time.sleep(3)
        attempts = len(agent.lines("backoff")) - before
        # 15 readings pile up (one each 0.2 s: the backoff never delays a reading); attempts
        # stay bounded by the backoff (cap 1 s, full jitter).
        assert 1 <= attempts <= 20, attempts
        backend.restart()
        agent.wait_for(r"sent (1[2-9]|[2-9]\d) up to seq", timeout=20)  # the replay: one batch
        agent.wait_for(r"spool 0$")
        replay = agent.lines(r"sent \d+ up to seq")[sent_before]
        assert re.search(r"sent (1[2-9]|[2-9]\d) up", replay), replay  # the first post after
    finally:
        agent.kill()
        if backend.service.proc is None:
            backend.restart()
    assert_contiguous(backend.seqs(dev))
    assert backend.tokens_issued(dev) == 1
    health = backend.health(dev)
    assert health["reset_cause"] == "power_on" and health["dropped"] == 0, health
    _no_secret(agent, secret)


def test_per_device_rate_limit_backs_the_agent_off_and_loses_nothing(
    micropython: str, tmp_path: Path
) -> None:
    """A board faster than its per-device readings rate gets 429 with Retry-After: the agent
    keeps its readings in the spool, waits, and delivers every one once the limit allows; the
    service counts the refused posts on the board."""
    env = {"PARK_INGEST_READINGS_PER_MINUTE": "120", "PARK_INGEST_READINGS_BURST": "5"}
    backend = Backend(tmp_path / "svc", env=env).start()
    dev, secret = backend.create_device()
    # 5 readings a second against 2 allowed: refused within seconds.
    config = board_config(dev, secret, backend.url, interval_s=0.2)
    agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config).start()
    try:
        agent.wait_for("upload refused: 429", count=2, timeout=20)
        agent.wait_for(r"sent \d+ up to seq", count=len(agent.lines(r"sent \d+ up")) + 2)
        # The limit lifted (a restart with the default): the spool drains, nothing lost.
        backend.stop()
        backend.service.env.pop("PARK_INGEST_READINGS_PER_MINUTE")
        backend.service.env.pop("PARK_INGEST_READINGS_BURST")
        backend.restart()
        agent.wait_for(r"spool 0$", count=len(agent.lines(r"spool 0$")) + 1, timeout=30)
    finally:
        agent.kill()
        backend.stop()
    assert_contiguous(backend.seqs(dev))
    refused = backend.query("SELECT refused FROM device_state WHERE device_id = ?", dev)
    assert refused[0][0] >= 1, refused
    assert "Traceback" not in agent.console()


def test_rejected_cached_token_is_replaced_once(
    micropython: str, backend: Backend, tmp_path: Path
) -> None:
    """A cached token the server refuses (401 invalid_token): drop it, fetch one, retry once."""
    dev, secret = backend.create_device()
    board = tmp_path / "board"
    agent = AgentProcess.on_new_board(micropython, board, board_config(dev, secret, backend.url))
    stale = {"access_token": "eyJhbGciOiJub25lIn0.e30.", "expires_in": 86400, "exp": None}
    (board / "token.json").write_text(json.dumps(stale))
    agent.start()
    try:
        agent.wait_for(r"sent \d+ up to seq", count=3)
    finally:
        agent.kill()
    assert len(agent.lines("token rejected")) == 1
    assert backend.tokens_issued(dev) == 1
    assert json.loads((board / "token.json").read_text())["access_token"] != stale["access_token"]
    assert_contiguous(backend.seqs(dev))


def test_wrong_secret_and_disabled_board_back_off(
    micropython: str, backend: Backend, tmp_path: Path
) -> None:
    """invalid_client: no readings, no crash, token requests thinning out (long cap)."""
    wrong, _ = backend.create_device()
    disabled, disabled_secret = backend.create_device(enabled=False)
    runs = []
    for name, dev, secret in (("wrong", wrong, "x" * 43), ("disabled", disabled, disabled_secret)):
        proxy = FaultProxy(backend.port)
        config = board_config(dev, secret, proxy.url, backoff_base_s=0.5, auth_backoff_cap_s=60)
        agent = AgentProcess.on_new_board(micropython, tmp_path / name, config).start()
        runs.append((dev, secret, proxy, agent))
    try:
        time.sleep(4)
    finally:
        for _, _, proxy, agent in runs:
            agent.kill()
            proxy.close()
    for dev, secret, proxy, agent in runs:
        assert backend.seqs(dev) == []
        assert agent.lines("token refused: 401 invalid_client")
        asked = proxy.exchanges("/oauth/token")
        assert all(e.status == 401 for e in asked)
        # Doubling from 0.5 s with full jitter: about five attempts in 4 s (9 is a 1-in-1000
        # draw), never one per reading (20).
        assert 1 <= len(asked) <= 9, len(asked)
        assert not proxy.exchanges("/v1/counts")
        _no_secret(agent, secret)


def test_tls_verifies_ca_and_host_name(micropython: str, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    backend = Backend(tmp_path / "svc", tls=(pki.server_cert, pki.server_key)).start()
    cases = {
        "der": (pki.ca_der, backend.url),
        "pem": (pki.ca_pem, backend.url),
        "stranger-ca": (pki.stranger_ca_der, backend.url),
        "wrong-host": (pki.ca_der, backend.url.replace("localhost", "127.0.0.1")),
    }
    agents = {}
    try:
        for name, (ca, url) in cases.items():
            dev, secret = backend.create_device()
            config = board_config(dev, secret, url, ca_cert="ca.crt")
            # mbedTLS allocates from the Python heap on the Unix port (tens of KB per connection);
            # on an ESP32 it has its own, so the 64 KB board budget does not apply here.
            agent = AgentProcess.on_new_board(micropython, tmp_path / name, config, heap="256K")
            shutil.copy(ca, agent.board / "ca.crt")
            agents[name] = (dev, agent.start())
        agents["der"][1].wait_for(r"sent \d+ up to seq", count=3)
        agents["pem"][1].wait_for(r"sent \d+ up to seq", count=3)
        agents["stranger-ca"][1].wait_for("not correctly signed by the trusted CA", count=2)
        agents["wrong-host"][1].wait_for("does not match", count=2)
    finally:
        for _, agent in agents.values():
            agent.kill()
        backend.stop()
    assert_contiguous(backend.seqs(agents["der"][0]))
    assert_contiguous(backend.seqs(agents["pem"][0]))
    assert backend.seqs(agents["stranger-ca"][0]) == []
    assert backend.seqs(agents["wrong-host"][0]) == []
    assert backend.tokens_issued(agents["stranger-ca"][0]) == 0


def test_short_token_lifetime_refreshes_once_per_lifetime(micropython: str, tmp_path: Path) -> None:
    """--token-ttl 5: a new token in the last tenth of each lifetime, never a 401 on the way."""
    backend = Backend(tmp_path / "svc", token_ttl=5).start()
    try:
        dev, secret = backend.create_device()
        config = board_config(dev, secret, backend.url)
        agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config).start()
        try:
            agent.wait_for("token fetched, lifetime 5s")
            started = time.monotonic()
            agent.wait_for("token fetched", count=2, timeout=10)
            elapsed = time.monotonic() - started
            time.sleep(1)
        finally:
            agent.kill()
        # Refreshed at ~90% of 5 s (Date headers have 1 s resolution), and never after expiry.
        assert 3.5 <= elapsed <= 6.5, elapsed
        assert not agent.lines("token rejected|refused")
        assert backend.tokens_issued(dev) == 2
        assert_contiguous(backend.seqs(dev))
    finally:
        backend.stop()


def test_bad_config_one_line_then_waits(micropython: str, tmp_path: Path) -> None:
    config = board_config("dev_x", "s" * 43, "http://localhost:9")
    del config["lot"]
    agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config).start()
    try:
        agent.wait_for("config error: missing key 'lot'")
        time.sleep(0.5)
        assert agent.proc is not None and agent.proc.poll() is None, "the agent must wait"
        config["lot"] = "lot-a"
        (agent.board / "config.json").write_text(json.dumps(config))
        agent.wait_for("started dev_x in lot lot-a", timeout=10)
    finally:
        agent.kill()
    assert len(agent.lines("config error")) == 1
    assert "Traceback" not in agent.console()


def test_safe_mode_after_boots_without_upload(micropython: str, tmp_path: Path) -> None:
    config = board_config("dev_x", "s" * 43, "http://localhost:9", safe_boots=2)
    agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config)
    for _ in range(2):  # two boots that never reach the server
        agent.start()
        agent.wait_for("started dev_x", count=_ + 1)
        agent.kill()
    agent.start()
    agent.wait_for(r"safe mode \(2 boots without a successful upload\)")
    assert agent.proc is not None
    assert agent.proc.wait(5) == 0, "main.py returns: the REPL stays free"


def test_wifi_drop_rejoins_and_replays(micropython: str, backend: Backend, tmp_path: Path) -> None:
    dev, secret = backend.create_device()
    link = tmp_path / "wifi-link"
    link.write_text("up")
    config = board_config(dev, secret, backend.url, wifi_timeout_s=0.3)
    agent = AgentProcess.on_new_board(
        micropython, tmp_path / "board", config, env={"PARKSIM_WIFI": str(link)}
    ).start()
    try:
        agent.wait_for(r"sent \d+ up to seq", count=2)
        link.write_text("down")
        agent.wait_for("wifi lost")
        agent.wait_for(r"wifi join failed \(status 201\)")
        time.sleep(1)
        link.write_text("up")
        agent.wait_for("wifi connected", count=2)
        agent.wait_for(r"sent ([2-9]|\d\d) up to seq")  # the readings of the gap, in one batch
    finally:
        agent.kill()
    assert_contiguous(backend.seqs(dev))


def test_reboot_after_long_offline(micropython: str, tmp_path: Path) -> None:
    """No contact for offline_reboot_s: reboot (exit 75 under the shim), not counted as a crash."""
    config = board_config("dev_x", "s" * 43, "http://localhost:9", offline_reboot_s=1.5)
    agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config).start()
    assert agent.proc is not None
    assert agent.proc.wait(10) == 75
    assert agent.lines("no contact with the server for 1s, rebooting")
    assert not (agent.board / "boots").exists(), "a deliberate reboot resets the crash counter"


def test_gate_sensor_board_counts_cars(micropython: str, backend: Backend, tmp_path: Path) -> None:
    """A gate board end to end: simulated light barriers (pin files), cumulative counters at the
    server; killed (kill -9) mid-stream and restarted, it goes on from its stored counters."""
    dev, secret = backend.create_device()
    pins = tmp_path / "pins"
    pins.mkdir()
    gate = {"kind": "gate", "pin_a": 12, "pin_b": 13, "debounce_ms": 10}
    config = board_config(dev, secret, backend.url, sensor=gate, interval_s=0.1)
    agent = AgentProcess.on_new_board(
        micropython, tmp_path / "board", config, env={"PARKSIM_PIN_DIR": str(pins)}
    ).start()

    def beams(a: int, b: int) -> None:  # active low: 0 = beam broken
        (pins / "pin12").write_text(str(a))
        (pins / "pin13").write_text(str(b))
        time.sleep(0.3)  # longer than a reading: the main loop's sync() sees every step

    def car(inward: bool) -> None:
        steps = ((0, 1), (0, 0), (1, 0), (1, 1))
        for a, b in steps if inward else tuple((b, a) for a, b in steps):
            beams(a, b)

    try:
        agent.wait_for(r"sent \d+ up to seq", count=2)
        car(True)
        car(True)
        car(False)
        for a, b in ((0, 1), (1, 1)):  # someone turns back at the street side
            beams(a, b)
        time.sleep(0.5)
        agent.kill()  # kill -9 mid-stream
        agent.start()
        agent.wait_for(r"started .* seq", count=2)
        car(True)
        time.sleep(0.5)
        agent.wait_for(r"sent \d+ up to seq", count=len(agent.lines(r"sent \d+ up to seq")) + 1)
    finally:
        agent.kill()
    readings = backend.gate_readings(dev)
    assert readings[0][1:] == (0, 0) and readings[-1][1:] == (3, 1), readings
    pairs = [r[1:] for r in readings]
    assert pairs == sorted(pairs), "counters never go back, across the reboot too"
    assert_contiguous([seq for seq, _, _ in readings])


def test_upload_every_collects_readings_into_posts(
    micropython: str, backend: Backend, tmp_path: Path
) -> None:
    dev, secret = backend.create_device()
    config = board_config(dev, secret, backend.url, interval_s=0.2, upload_every_s=1)
    agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config).start()
    try:
        agent.wait_for(r"sent [3-9] up to seq", count=2)
    finally:
        agent.kill()
    assert_contiguous(backend.seqs(dev))


@pytest.mark.parametrize("head", [120, None], ids=["delivered-up-to-120", "never-delivered"])
def test_spool_of_an_earlier_agent_is_delivered_once(
    micropython: str, backend: Backend, tmp_path: Path, head: int | None
) -> None:
    """A board updated from the agent before gate readings (12-byte spool records): what that
    agent spooled and never delivered goes out under its own seq, once; seq goes on after it."""
    dev, secret = backend.create_device()
    config = board_config(dev, secret, backend.url, batch_max=50)
    agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config)
    pending = write_old_spool(agent.board, 300, head, dropped=2, ts0=int(time.time()) - 3600)
    agent.start()
    try:
        agent.wait_for(rf"started {dev} in lot lot-a, seq 300, spool {len(pending)}$")
        agent.wait_for(r"sent \d+ up to seq 3\d\d, spool 0$", timeout=30)
    finally:
        agent.kill()
    stored = backend.readings(dev)
    first = head or 0
    assert [s for s, _, _ in stored] == list(range(first, first + len(stored))), "gaps or doubles"
    assert [(s, c, int(t or 0)) for s, c, t in stored[: len(pending)]] == pending
    assert stored[len(pending)][0] == 300 and stored[len(pending)][1] == 3, "the board's own next"
    spool = sorted(p.name for p in (agent.board / "spool.d").iterdir())
    assert "new" not in spool and "ptr.new" not in spool, spool
    assert (agent.board / "spool.d" / "ptr").stat().st_size == 20
    assert backend.health(dev)["dropped"] == (2 if head else 0), "dropped carried over"
    _no_secret(agent, secret)


def test_spool_conversion_killed_midway_loses_nothing(micropython: str, tmp_path: Path) -> None:
    """kill -9 at later and later instants of the boot that converts an earlier agent's spool
    (3,900 readings not yet delivered): each boot resumes or restarts the conversion, and the
    service stores every reading once."""
    # Its own service whose per-device readings burst takes the whole backlog: the test is
    # about the conversion, not the rate limit (which the test above pins down).
    backend = Backend(tmp_path / "svc", env={"PARK_INGEST_READINGS_BURST": "10000"}).start()
    dev, secret = backend.create_device()
    # safe_boots: the boots cut short never upload, which would end in safe mode after 5.
    config = board_config(dev, secret, backend.url, batch_max=100, safe_boots=1000)
    agent = AgentProcess.on_new_board(micropython, tmp_path / "board", config)
    pending = write_old_spool(agent.board, 4000, 100, ts0=int(time.time()) - 7200)
    spool = agent.board / "spool.d"
    cut_midway = 0
    try:
        # kill after 5 ms, 6 ms, ... until the conversion is done: the spool is the first part
        # the agent builds at boot, in a nearly empty heap, and converts in a few ms
        for step in range(400):
            agent.start()
            time.sleep(0.005 + step * 0.001)
            agent.kill()
            cut_midway += (spool / "new").exists() or (spool / "ptr.new").exists()
            if (spool / "ptr").exists() and (spool / "ptr").stat().st_size == 20:
                break
        agent.start()
        agent.wait_for(r"sent \d+ up to seq 40\d\d, spool 0$", timeout=60)
    finally:
        agent.kill()
        backend.stop()
    assert cut_midway >= 1, "no kill landed during the conversion"
    stored = backend.readings(dev)
    assert [s for s, _, _ in stored] == list(range(100, 100 + len(stored))), "gaps or doubles"
    assert [(s, c, int(t or 0)) for s, c, t in stored[: len(pending)]] == pending
