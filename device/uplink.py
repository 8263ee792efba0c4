# The uplink, and the agent's retry supervisor (as in mqtt_as). It posts the spool's readings to
# POST {ingest_url}/v1/counts with a cached OAuth token, and it alone decides every retry: when to
# join WiFi again, when to request a token or post again, how long the server has been out of
# reach. The layers below report to it and keep no retry state: net.py returns the link's state,
# http.py raises OSError (transport) or HTTPError (a refusal), token.py raises what its request
# met. Here a rejected token is replaced once, 413 halves the batch, invalid_client backs off to a
# long cap, 429/503 wait no less than Retry-After, and every other failure backs off
# exponentially with full jitter (the delays: backoff.py, loaded after a failure only).
import time

from micropython import const

import clock
import cold
import http

_JSON = b"application/json"
_WIFI_BASE_S = const(2)  # WiFi joins: 2 s, 4 s, ... up to 2 minutes, full jitter
_WIFI_CAP_S = const(120)
_LINK_WAIT_MS = const(5000)  # no WiFi and no join due: look again after this
_PLAIN = const(48)  # longest answer without an "update"
_RESERVE = const(240)  # body room for the brackets and health (<= 200 bytes)


class Uplink:
    def __init__(
        self,
        conn,
        counts_path,
        token,
        wifi,
        batch,
        health_ms,
        base_s,
        cap_s,
        auth_s,
        log,
        state,
        crash,
        interval_s,
    ):
        self.conn = conn  # to the ingest API (and, for a token request, its endpoint: token.py)
        self.counts_path = counts_path
        self.token = token
        self.wifi = wifi
        self.batch = batch  # readings per post; halved on 413
        self.health_ms = health_ms
        self.interval_s = interval_s  # the config's, whole seconds: health tells the server
        self.base_s = base_s  # backoff_base_s, backoff_cap_s, auth_backoff_cap_s (config)
        self.cap_s = cap_s
        self.auth_s = auth_s
        self.log = log
        # Retry state, written only here.
        self.failures = 0  # uploads/token requests failed in a row (network, 5xx, 429/503)
        self.auth_failures = 0  # refusals of the board's credentials in a row
        self.wifi_failures = 0  # WiFi joins failed in a row
        self.retry_at = None  # ticks_ms before which no upload (or token request) is tried
        self.join_at = None  # ticks_ms before which no WiFi join is tried
        self.down_since = None  # ticks_ms of the first failure to reach the server since the last
        # answer: agent.py reboots after offline_reboot_s of it
        self.health_at = None  # ticks_ms of the last health object the server acknowledged
        self.uploaded = False  # a batch went through since boot (safe mode's counter is reset)
        # Vitals since the last acknowledged health object (health.py reports them).
        self.token_fails = 0
        self.post_fails = 0
        self.rssi_min = None
        self.drops = 0  # wifi.drops when the last health object was acknowledged
        # The version and its update state (appstate.load at boot, appstate.update after a post):
        # the running version, agent: b',"agent":{...}' for the next post or None, skip: a
        # version not to install, key: the release key (hex) or None. (Names the heap has
        # already: each new one is a qstr for good, README "Memory".)
        self.version, self.agent, self.skip, self.key = state
        self.crash = crash  # b',"crash":{...}' until a post carrying it is answered (crash.py)
        self._n = 0  # body bytes written so far
        self._last = None  # (seq, reading) of the last reading in the body
        self.health = False  # the body carries a health object

    def waiting(self, now):
        # True while uploads must wait (a backoff, or no link).
        return self.retry_at is not None and time.ticks_diff(self.retry_at, now) > 0

    def failed(self, e, conn, renewed=None):
        # A token request (renewed None) or an upload on conn failed with e. True: send again at
        # once (with a new token, or a smaller batch); False: backed off. What e means (by the
        # RFCs) is backoff.judge's answer; the bookkeeping is here.
        answered = isinstance(e, http.HTTPError)
        if renewed is None:
            self.token_fails += 1
        else:
            self.post_fails += 1
        if answered:
            self.down_since = None  # the server answered
            clock.learn(conn.date)
        elif self.down_since is None:
            self.down_since = time.ticks_ms()  # out of reach: counts toward offline_reboot_s
        import backoff

        then, why, retry_after, auth = backoff.judge(e, renewed, self.batch, self.crash)
        if not then:
            if auth:
                self.auth_failures += 1
                n, cap = self.auth_failures, self.auth_s
            else:
                self.failures += 1
                n, cap = self.failures, self.cap_s
            self.retry_at = backoff.until(self.base_s, cap, n, retry_after, why, self.log)
        cold.drop(backoff)
        if not then:
            return False
        self.log(why)
        if then > 0:
            self.batch = then
            return True
        if then < -1:
            self.crash = None  # refused, and forgotten (backoff.judge): the readings go on
            return True
        self.token.drop()
        return self.get_token()

    def get_token(self):
        # Token renewal (about once a day): True with a fresh token; False after a failure, with
        # a backoff set.
        try:
            life = self.token.fetch()
        except (http.HTTPError, OSError, ValueError) as e:
            return self.failed(e, self.conn)
        self.down_since = None  # the server answered
        clock.learn(self.conn.date)
        self.auth_failures = 0
        self.log("token fetched, lifetime %ds" % life)
        return True

    def _body(self, spool, uptime_s, heap_min):
        # {"readings":[...],"health":{...},"agent":{...},"crash":{...}} written in place into the
        # connection's buffer. Each reading goes in with a "," in front; the first one's becomes
        # the "[" (few constants: each is an object in the heap for as long as this module is
        # loaded).
        self._n = 0
        self._last = None
        self._put(b'{"readings":')
        first = self._n
        n = self.batch
        extra = len(self.agent or b"") + len(self.crash or b"")
        if extra:
            # A report (the agent's, a crash) takes the room of readings (68 bytes each at
            # most); the buffer holds a crash report with at least one (assemble.py sizes it).
            n = max(1, min(n, (len(self.conn.body) - extra - _RESERVE) // 68))
        got = spool.peek(n, self._reading)
        self.conn.body[first] = 91  # "[" (a body with no reading is not sent)
        self._put(b"]")
        h = self.health_at
        self.health = h is None or time.ticks_diff(time.ticks_ms(), h) >= self.health_ms
        if self.health:
            import health  # every few minutes only: cold

            # spool_depth: what is still waiting after this post
            self._put(health.encode(self, spool.depth() - got, spool.dropped, uptime_s, heap_min))
            cold.drop(health)
        if self.agent:
            self._put(self.agent)  # the version and update state (appstate.py)
        if self.crash:
            self._put(self.crash)
        self._put(b"}")
        return got

    def _put(self, data):
        end = self._n + len(data)
        self.conn.body[self._n : end] = data
        self._n = end

    def _reading(self, seq, v, ts):
        # A zone reading {"seq","cars","ts"}, a gate reading {"seq","in","out","ts"}; ts None
        # is null (%s formats an int or a str as its text).
        self._last = (seq, v)
        t = ts or "null"
        if isinstance(v, tuple):
            self._put(b',{"seq":%d,"in":%d,"out":%d,"ts":%s}' % (seq, v[0], v[1], t))
        else:
            self._put(b',{"seq":%d,"cars":%d,"ts":%s}' % (seq, v, t))

    def upload(self, spool, uptime_s, heap_min, feed):
        # The link, a token, then batches while the spool has readings; after a failure a backoff
        # is set and this returns.
        now = time.ticks_ms()
        join = self.join_at is None or time.ticks_diff(self.join_at, now) <= 0
        status = self.wifi.ensure(join, feed)  # may block for a join, at most wifi_timeout_s
        if status is not True:
            if status is not False:
                self.wifi_failures += 1
                why = "wifi join failed (status %s)" % status
                import backoff

                n = self.wifi_failures
                self.join_at = backoff.until(_WIFI_BASE_S, _WIFI_CAP_S, n, None, why, self.log)
                cold.drop(backoff)
            # No link: uploads wait, and the time out of reach counts toward offline_reboot_s.
            now = time.ticks_ms()
            self.retry_at = time.ticks_add(now, _LINK_WAIT_MS)
            if self.down_since is None:
                self.down_since = now
            return
        self.wifi_failures = 0
        self.join_at = None
        r = self.wifi.rssi()
        if r is not None:
            self.rssi_min = min(r, self.rssi_min or 0)  # dBm: below 0
        if self.token.due() and not self.get_token():
            return
        renewed = False
        while spool.depth():
            feed()
            got = self._body(spool, uptime_s, heap_min)
            if not got:
                # Segment files lost or corrupted under the pointer: count them, move past them.
                self.log("spool: %d unreadable readings dropped" % spool.skip())
                continue
            try:
                self.conn.request("POST", self.counts_path, self._n, _JSON, self.token.value)
            except (http.HTTPError, OSError) as e:
                if not self.failed(e, self.conn, renewed):
                    return
                renewed = renewed or e.status == 401  # again at once: a refusal (HTTPError)
                continue
            self.down_since = None
            clock.learn(self.conn.date)
            spool.ack(self._last[0], self._last[1])
            self.failures = self.auth_failures = 0  # every backoff starts over
            self.retry_at = None
            self.log("sent %d up to seq %d, spool %d" % (got, self._last[0], spool.depth()))
            if self.health:
                # Acknowledged: the vitals start over, and the next report is due in health_ms.
                self.health_at = time.ticks_ms()
                self.token_fails = self.post_fails = 0
                self.rssi_min = None
                self.drops = self.wifi.drops
            if self.agent or self.crash or not self.uploaded or len(self.conn.resp) > _PLAIN:
                # The first upload of a boot, a report delivered, or an answer with more than
                # {"accepted":n,"duplicates":m} (an update): cold, in appstate.py, which returns
                # the report for the next post, the version not to install and the crash report
                # still to send (none: this post's was answered).
                import appstate

                self.agent, self.skip, self.crash = appstate.update(self)
                cold.drop(appstate)
                self.uploaded = True
