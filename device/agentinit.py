# The constructors of Agent and Uplink and the choice of sensor (run once at boot through cold.py,
# so this code does not stay in the heap): the objects and settings the main loop works with.
import time
from micropython import const

import http
from net import WiFi
from sensor import FileSensor
from spool import Spool
from token import Token
from uplink import Uplink

_READING = const(56)  # body bytes per reading, worst case


def agent(a, c, log):
    a.up = Uplink(c, log)  # its buffers first, while the heap has large free blocks
    a.spool = Spool(c["spool_max"])
    a.sensor = make_sensor(c["sensor"], a.spool.cars)
    a.wifi = WiFi(c["wifi"]["ssid"], c["wifi"].get("password", ""), c["wifi_timeout_s"], log)
    a.wdt = None
    a.uptime_ms = 0
    a._tick = time.ticks_ms()
    a.sensor_ok = True
    a.heap_peak = 0  # gc.mem_alloc() before each collection (live + one loop's garbage)
    a.heap_live = 0  # gc.mem_alloc() after each collection


def make_sensor(cfg, start=None):
    # start: the last count stored, so a gate board's occupancy survives a reboot.
    if cfg["kind"] == "gate":
        from gate import GateSensor  # gate boards only: its code stays out of the others' heap

        return GateSensor(cfg, start)
    return FileSensor(cfg["path"])


def uplink(u, c, log):
    u.log = log
    t = c["http_timeout_s"]
    tls, host, port, path = c["ingest_url"]  # split by config.validate
    u.counts_path = path.rstrip("/") + "/v1/counts"
    u.conn = http.Conn(tls, host, port, c["batch_max"] * _READING + 256, 1024, t, c["ca_cert"])
    tls, host, port, path = c["token_url"]
    tconn = u.conn  # one kept-alive connection when both live on the same origin
    if (tls, host, port) != (u.conn.tls, u.conn.host, u.conn.port):
        tconn = http.Conn(tls, host, port, 128, 1024, t, c["ca_cert"])
    u.token = Token(tconn, path, c["device_id"], c["client_secret"], c["audience"])
    c["client_secret"] = None  # kept only inside the precomputed Basic credentials
    # Backoffs as backoff.py takes them: [base_s, cap_s, consecutive failures]
    u.retry = [c["backoff_base_s"], c["backoff_cap_s"], 0]
    u.auth_retry = [c["backoff_base_s"], c["auth_backoff_cap_s"], 0]
    u.batch = c["batch_max"]
    u.health_ms = int(c["health_every_s"] * 1000)
    u.health_at = None
    u.retry_at = None  # ticks_ms before which no upload is tried
    u.down_since = None  # first transport failure since the last HTTP response
    u.uploaded = False
