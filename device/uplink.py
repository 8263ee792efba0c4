# Uploads: the spool's readings to POST {ingest_url}/v1/counts with a cached OAuth token, and the
# retry policy around it. HTTP refusals (HTTPError) and transport errors (OSError) are handled
# only here (a token request's in tokenget.get_token): invalid_client backs off to a long cap,
# 429/503 honour Retry-After, a rejected token is replaced once, everything else backs off
# exponentially with full jitter.
import time

import clock
import cold
import flash
import http

_JSON = b"application/json"


class Uplink:
    def __init__(self, c, log):
        # Boot-only setup, in agentinit.py so that its code leaves the heap afterwards.
        cold.run("agentinit", "uplink", self, c, log)

    def waiting(self, now):
        return self.retry_at is not None and time.ticks_diff(self.retry_at, now) > 0

    def fail(self, why, retry_after=None, auth=False, offline=False):
        # After a failure only: backoff.fail sets retry_at and logs it (loaded by cold.py).
        cold.run("backoff", "fail", self, why, retry_after, auth, offline)

    def _heard(self, conn):
        self.down_since = None
        clock.learn(conn.date)

    def get_token(self):
        # About once a day: the request and its error handling are in tokenget.py (cold.py).
        return cold.run("tokenget", "get_token", self)

    def _body(self, spool, health_args):
        # {"readings":[...],"health":{...}} written in place into the connection's buffer.
        self._n = 0
        self._last = None
        self._put(b'{"readings":[')
        got = spool.peek(self.batch, self._reading)
        self._put(b"]")
        now = time.ticks_ms()
        if self.health_at is None or time.ticks_diff(now, self.health_at) >= self.health_ms:
            self.health_at = now
            self._put(b',"health":')
            # Every few minutes only: health.py's code is loaded for it (cold.py).
            self._put(cold.run("health", "encode", *health_args))
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

    def upload(self, spool, health_args, feed):
        # Send batches while the spool has readings; on failure set retry_at and return.
        if self.token.due() and not self.get_token():
            return
        renewed = False
        while spool.depth():
            feed()
            got = self._body(spool, health_args)
            if not got:
                # Segment files lost or corrupted under the pointer: count them, move past them
                # (spoolscan.py, through cold.py: this should never happen on a healthy board).
                n = cold.run("spoolscan", "skip", spool)
                self.log("spool: %d unreadable readings dropped" % n)
                continue
            try:
                self.conn.request(b"POST", self.counts_path, self._n, _JSON, self.token.value)
            except http.HTTPError as e:
                self._heard(self.conn)
                # Rare: backoff.refused decides between one new token, a smaller batch and a
                # backoff (loaded by cold.py).
                if not cold.run("backoff", "refused", self, e, renewed):
                    return
                renewed = renewed or e.status == 401
                continue
            except OSError as e:
                self.fail("upload failed: %r" % e, offline=True)
                return
            self._heard(self.conn)
            spool.ack(self._last[0], self._last[1])
            self.retry[2] = self.auth_retry[2] = 0
            self.retry_at = None
            self.log("sent %d up to seq %d, spool %d" % (got, self._last[0], spool.depth()))
            if not self.uploaded:
                self.uploaded = True
                flash.remove("boots")  # this boot worked: reset safemode's crash-loop counter
