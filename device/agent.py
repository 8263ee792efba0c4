# The parking-lot agent's main loop: take a reading every interval_s into the flash spool, upload
# the spool oldest-first in batches with a cached OAuth token, back off with jitter on failure.
# Transport errors are OSError and HTTP refusals HTTPError; both are handled only here.
import gc
import sys
import time

import machine
from micropython import const

import clock
import config
import health
import http
import safemode
import sensor
from backoff import Backoff
from net import WiFi
from spool import Spool
from token import Token

gc.collect()

_JSON = b"application/json"
_READING = const(56)  # body bytes per reading, worst case
_SLICE_MS = const(1000)  # longest sleep between watchdog feeds


def log(msg):
    print("parkfleet:", msg)


class Agent:
    def __init__(self, c):
        self.c = c
        self.spool = Spool(c["spool_max"])
        self.sensor = sensor.make(c["sensor"], self.spool.cars)
        t = c["http_timeout_s"]
        tls, host, port, path = http.split_url(c["ingest_url"])
        self.counts_path = path.rstrip("/") + "/v1/counts"
        self.conn = http.Conn(
            tls, host, port, c["batch_max"] * _READING + 256, 1536, t, c["ca_cert"]
        )
        tls, host, port, path = http.split_url(c["token_url"])
        tconn = self.conn  # one kept-alive connection when both live on the same origin
        if not self.conn.same_origin(tls, host, port):
            tconn = http.Conn(tls, host, port, 128, 1536, t, c["ca_cert"])
        self.token = Token(tconn, path, c["device_id"], c["client_secret"], c["audience"])
        c["client_secret"] = None  # kept only inside the precomputed Basic credentials
        self.wifi = WiFi(c["wifi"]["ssid"], c["wifi"].get("password", ""), c["wifi_timeout_s"], log)
        self.retry = Backoff(c["backoff_base_s"], c["backoff_cap_s"])
        self.auth_retry = Backoff(c["backoff_base_s"], c["auth_backoff_cap_s"])
        self.batch = c["batch_max"]
        self.retry_at = None
        self.wdt = None
        self.uptime_ms = 0
        self._tick = time.ticks_ms()
        self.down_since = None  # first transport failure since the last HTTP response
        self.health_at = None
        self.uploaded = False
        self.sensor_ok = True
        self.heap_peak = 0
        self.heap_live = 0

    def feed(self):
        if self.wdt:
            self.wdt.feed()
        now = time.ticks_ms()
        self.uptime_ms += time.ticks_diff(now, self._tick)
        self._tick = now

    def read_sensor(self):
        cars = self.sensor.read()
        if cars is None:
            if self.sensor_ok:
                log("sensor: no reading")
            self.sensor_ok = False
            return
        self.sensor_ok = True
        try:
            self.spool.append(cars, clock.now())
        except OSError as e:
            self.spool.dropped += 1
            log("spool write failed (%s), reading dropped" % e)

    def fail(self, why, retry_after=None, auth=False, offline=False):
        if offline and self.down_since is None:
            self.down_since = time.ticks_ms()
        b = self.auth_retry if auth else self.retry
        delay = b.next(retry_after)
        self.retry_at = time.ticks_add(time.ticks_ms(), delay)
        log(
            "backoff %d.%ds after %s (failure %d)"
            % (delay // 1000, delay % 1000 // 100, why, b.failures)
        )

    def _heard(self, conn):
        self.down_since = None
        clock.learn(conn.date)

    def get_token(self):
        try:
            life = self.token.fetch()
        except http.HTTPError as e:
            self._heard(self.token.conn)
            why = "token refused: %d %s" % (e.status, e.error or "")
            if e.status in (429, 503):
                self.fail(why, e.retry_after)
            else:
                # invalid_client: wrong secret or a disabled board; a long cap, never hammering.
                self.fail(why, None, e.status in (400, 401, 403))
            return False
        except (OSError, ValueError) as e:
            self.fail("token request failed: %r" % e, offline=True)
            return False
        self._heard(self.token.conn)
        self.auth_retry.reset()
        log("token fetched, lifetime %ds" % life)
        return True

    def _body(self):
        # {"readings":[...],"health":{...}} written in place into the connection's buffer.
        self._n = 0
        self._last = None
        self._put(b'{"readings":[')
        got = self.spool.peek(self.batch, self._reading)
        self._put(b"]")
        now = time.ticks_ms()
        every = int(self.c["health_every_s"] * 1000)
        if self.health_at is None or time.ticks_diff(now, self.health_at) >= every:
            self.health_at = now
            self._put(b',"health":')
            h = health.encode(
                self.uptime_ms // 1000, self.wifi.rssi(), self.spool.depth(), self.spool.dropped
            )
            self._put(h)
            if self.c["debug_heap"]:
                log(
                    "heap live %d peak %d free %d" % (self.heap_live, self.heap_peak, gc.mem_free())
                )
        self._put(b"}")
        return got

    def _put(self, data):
        end = self._n + len(data)
        self.conn.body[self._n : end] = data
        self._n = end

    def _reading(self, seq, cars, ts):
        if self._last is not None:
            self._put(b",")
        self._put(b'{"seq":%d,"cars":%d,"ts":%s}' % (seq, cars, b"%d" % ts if ts else b"null"))
        self._last = (seq, cars)

    def upload(self):
        # Send batches while the spool has readings; on failure, set retry_at and return.
        if not self.wifi.ensure(self.feed):
            self.retry_at = time.ticks_add(time.ticks_ms(), _SLICE_MS * 5)
            if self.down_since is None:
                self.down_since = time.ticks_ms()
            return
        if self.token.due() and not self.get_token():
            return
        renewed = False
        while self.spool.depth():
            self.feed()
            got = self._body()
            try:
                self.conn.request(b"POST", self.counts_path, self._n, _JSON, self.token.value)
            except http.HTTPError as e:
                self._heard(self.conn)
                if e.status == 401 and not renewed:
                    # RFC 6750 §3.1 invalid_token (expired, revoked key): one new token, one retry.
                    log("token rejected (%s), fetching a new one" % e.error)
                    self.token.drop()
                    renewed = True
                    if not self.get_token():
                        return
                    continue
                why = "upload refused: %d %s" % (e.status, e.error or "")
                if e.status == 413 and self.batch > 1:
                    self.batch //= 2
                    log("%s, batch now %d" % (why, self.batch))
                    continue
                self.fail(why, e.retry_after, e.status in (401, 403))
                return
            except OSError as e:
                self.fail("upload failed: %r" % e, offline=True)
                return
            self._heard(self.conn)
            self.spool.ack(self._last[0], self._last[1])
            self.retry.reset()
            self.auth_retry.reset()
            self.retry_at = None
            log("sent %d up to seq %d, spool %d" % (got, self._last[0], self.spool.depth()))
            if not self.uploaded:
                self.uploaded = True
                safemode.healthy()  # this boot worked: reset the crash-loop counter

    def run(self):
        c = self.c
        if c["wdt_s"]:
            self.wdt = machine.WDT(timeout=int(c["wdt_s"] * 1000))
        interval = int(c["interval_s"] * 1000)
        offline = int(c["offline_reboot_s"] * 1000)
        log(
            "started %s in lot %s, seq %d, spool %d"
            % (c["device_id"], c["lot"], self.spool.next_seq, self.spool.depth())
        )
        next_read = time.ticks_ms()
        while True:
            self.feed()
            now = time.ticks_ms()
            if time.ticks_diff(now, next_read) >= 0:
                self.read_sensor()
                next_read = time.ticks_add(next_read, interval)
                if time.ticks_diff(now, next_read) > 0:
                    next_read = time.ticks_add(now, interval)  # fell behind: do not burst
            if self.spool.depth() and (
                self.retry_at is None or time.ticks_diff(now, self.retry_at) >= 0
            ):
                self.upload()
            self.heap_peak = max(self.heap_peak, gc.mem_alloc())
            gc.collect()
            self.heap_live = max(self.heap_live, gc.mem_alloc())
            down = self.down_since
            if offline and down is not None and time.ticks_diff(time.ticks_ms(), down) > offline:
                log("no contact with the server for %ds, rebooting" % (offline // 1000))
                safemode.healthy()  # a deliberate reboot is not a crash loop
                machine.reset()
            wake = next_read
            if (
                self.retry_at is not None
                and self.spool.depth()
                and time.ticks_diff(self.retry_at, wake) < 0
            ):
                wake = self.retry_at
            wait = time.ticks_diff(wake, time.ticks_ms())
            if wait > 0:
                time.sleep_ms(min(wait, _SLICE_MS))


def _wait_for_config():
    # A bad config.json: one line, then wait (REPL reachable by Ctrl-C) until the file changes.
    import os

    while True:
        try:
            return config.load()
        except ValueError as e:
            log("config error: %s; waiting for a fixed config.json" % e)
        try:
            seen = os.stat("config.json")
        except OSError:
            seen = None
        while True:
            time.sleep(2)
            try:
                st = os.stat("config.json")
            except OSError:
                st = None
            if st != seen:
                break


def main():
    c = _wait_for_config()
    try:
        Agent(c).run()
    except Exception as e:  # a bug must not leave a dead board in the field
        log("crashed: %r; rebooting in 10 s" % e)
        sys.print_exception(e)
        time.sleep(10)
        machine.reset()
