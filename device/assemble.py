# Cold, boot only (agent.main loads it once, then drops it): builds the agent's parts from the
# validated config. Each part is constructed by its own class from plain values; this module
# only reads the config and chooses (the sensor kind, one connection or two).
import machine
from micropython import const

import cold
import http
from net import WiFi
from sensor import FileSensor
from spool import Spool
from token import Token
from uplink import Uplink

_READING = const(56)  # body bytes per zone reading, worst case
_GATE_READING = const(68)  # per gate reading ({"seq","in","out","ts"}, 10-digit values)


def parts(c, log):
    # Agent's parts and loop settings (see Agent.__init__). Clears c["client_secret"]: from here
    # on it lives only inside the token's precomputed Basic credentials.
    t = c["http_timeout_s"]
    tls, host, port, path = c["ingest_url"]  # split by config.validate
    # The connections' buffers first, while the heap has large free blocks.
    # A file sensor simulating a gate (tests, demo) fits the zone size: its numbers are short.
    per = _GATE_READING if c["sensor"]["kind"] == "gate" else _READING
    conn = http.Conn(tls, host, port, c["batch_max"] * per + 256, 1024, t, c["ca_cert"])
    counts_path = path.rstrip("/") + "/v1/counts"
    tls, host, port, path = c["token_url"]
    tconn = conn  # one kept-alive connection when both live on the same origin
    if (tls, host, port) != (conn.tls, conn.host, conn.port):
        tconn = http.Conn(tls, host, port, 128, 1024, t, c["ca_cert"])
    token = Token(tconn, path, c["device_id"], c["client_secret"], c["audience"])
    c["client_secret"] = None
    w = c["wifi"]
    wifi = WiFi(w["ssid"], w.get("password", ""), c["wifi_timeout_s"], log)
    health_ms = int(c["health_every_s"] * 1000)
    base, cap, auth = c["backoff_base_s"], c["backoff_cap_s"], c["auth_backoff_cap_s"]
    up = Uplink(conn, counts_path, token, wifi, c["batch_max"], health_ms, base, cap, auth, log)
    import appstate

    up.state = appstate.load(c["release_key"])
    cold.drop(appstate)
    spool = Spool(c["spool_max"])
    sensor = make_sensor(c["sensor"], spool.last)
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


def make_sensor(cfg, start=None):
    # start: the newest stored reading, so a gate board's counters survive a reboot.
    if cfg["kind"] == "gate":
        from gate import GateSensor  # gate boards only: its code stays out of the others' heap

        return GateSensor(cfg, start)
    return FileSensor(cfg["path"])
