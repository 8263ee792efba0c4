# Cold, boot only (agent.main loads it once, then drops it): builds the agent's parts from the
# validated config. Each part is constructed by its own class from plain values; this module
# only reads the config and chooses (the sensor kind, one connection or two). An update offered
# to the last run installs here first (ota.boot), with connect() alone: the network and a token.
import machine
from micropython import const

import cold
import flash
import http
from net import WiFi
from token import Token

_READING = const(56)  # body bytes per zone reading, worst case
_GATE_READING = const(68)  # per gate reading ({"seq","in","out","ts"}, 10-digit values)
# The buffer's least size: a token response with an access token of up to 2 KB (an RS256 JWT
# of an external issuer is about 1 KB), and a post with a crash report beside a reading.
_LEAST = const(2304)


def connect(c, log, body_cap):
    # (connection to the ingest API, Token, WiFi): the network side, built from the config.
    # The connection's buffer first, while the heap has large free blocks.
    t = c["http_timeout_s"]
    tls, host, port, _ = c["ingest_url"]  # split by config.validate
    conn = http.Conn(tls, host, port, body_cap, _LEAST, t, c["ca_cert"])
    # The token endpoint on the same connection, also on another origin (Token.fetch points the
    # connection there for the request, and back).
    token = Token(conn, c)
    w = c["wifi"]
    return conn, token, WiFi(w["ssid"], w.get("password", ""), c["wifi_timeout_s"], log)


def parts(c, log):
    # Agent's parts and loop settings (see Agent.__init__). First an update the last run was
    # offered (appstate.update): it installs now, before the parts take the heap, and resets.
    offer = flash.read("update")
    if offer and b" " not in offer:  # ("version why": a refusal, for appstate.load to report)
        import ota

        ota.boot(c, log, offer.decode(), connect)
        cold.drop(ota)
    from spool import Spool
    from uplink import Uplink

    # The spool and the sensor first: a gate board's sensor module brings so many names that the
    # qstr pool grows (about 3.2 KB in one block), which needs a heap not yet cut up by the
    # buffers and the cold modules of what follows.
    spool = Spool(c["spool_max"])
    sensor = make_sensor(c["sensor"], spool.last)
    # A file sensor simulating a gate (tests, demo) fits the zone size: its numbers are short.
    per = _GATE_READING if c["sensor"]["kind"] == "gate" else _READING
    conn, token, wifi = connect(c, log, c["batch_max"] * per + 256)
    c["client_secret"] = None  # from here on only inside the token's Basic credentials
    counts_path = c["ingest_url"][3].rstrip("/") + "/v1/counts"
    health_ms = int(c["health_every_s"] * 1000)
    base, cap, auth = c["backoff_base_s"], c["backoff_cap_s"], c["auth_backoff_cap_s"]
    app, report = reports(c["release_key"])
    # Whole seconds, rounded up, from 1 to a day (the API's bounds: a health object it refused
    # would hold up the readings).
    every = min(-int(-c["interval_s"] // 1) or 1, 86400)
    up = Uplink(
        conn,
        counts_path,
        token,
        wifi,
        c["batch_max"],
        health_ms,
        base,
        cap,
        auth,
        log,
        app,
        report,
        every,
    )
    log(
        "started %s in lot %s, seq %d, spool %d"
        % (c["device_id"], c["lot"], spool.next_seq, spool.depth())
    )
    # The watchdog last: from here on the main loop feeds it.
    wdt = machine.WDT(timeout=int(c["wdt_s"] * 1000)) if c["wdt_s"] else None
    interval_ms = int(c["interval_s"] * 1000)
    offline_ms = int(c["offline_reboot_s"] * 1000)
    every_ms = int(c["upload_every_s"] * 1000)
    return up, spool, sensor, wifi, wdt, (interval_ms, offline_ms, every_ms, c["debug_heap"])


def reports(key):
    # What the first posts report: the version and its update state (appstate.load), and a crash
    # of the last run or a watchdog reset or a brown-out now (crash.py, loaded only then: each
    # name of a loaded module is a qstr for good, so health.py's names wait for the first
    # post). In a function of its own, so that no frame keeps the dropped modules alive while
    # the rest of the agent is built.
    import appstate

    app = appstate.load(key)
    cold.drop(appstate)
    import os

    report = None
    r = machine.reset_cause()
    try:
        kept = os.stat("crash")[6]  # (not read: a deep traceback can be long)
    except OSError:
        kept = 0
    if r in (machine.WDT_RESET, getattr(machine, "BROWNOUT_RESET", 0)) or kept:
        import crash

        report = crash.load(None)
        cold.drop(crash)
    return app, report


def make_sensor(cfg, start=None):
    # start: the newest stored reading, so a gate board's counters survive a reboot.
    if cfg["kind"] == "gate":
        from gate import GateSensor  # gate boards only: its code stays out of the others' heap

        return GateSensor(cfg, start)
    from sensor import FileSensor

    return FileSensor(cfg["path"])
