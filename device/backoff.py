# Cold: what a failed token request or upload means, and how long to wait. The retry supervisor
# (Uplink.failed, uplink.py) loads this module after a failure only, applies its answer to its
# own state, and drops it again.
#
# Delays are exponential with full jitter (AWS Architecture Blog, "Exponential Backoff and
# Jitter"), so a fleet coming back from an outage spreads out instead of returning in step; a
# server's Retry-After (RFC 9110 §10.2.3) is a floor, with jitter on top.
import random
import time

from http import HTTPError

try:
    import os

    random.seed(int.from_bytes(os.urandom(4), "little"))
except (ImportError, AttributeError, OSError):
    random.seed(time.ticks_us())


def delay(base, cap, failures, retry_after=None):
    # Milliseconds to wait after the failures-th failure in a row (base and cap in seconds).
    ceiling = min(cap, base * (1 << min(failures - 1, 20)))
    if retry_after is not None:
        # Honour the server, spread by up to a quarter of its delay (at least a second).
        ra = min(retry_after, 3600)  # a broken header must not park the board for days
        return int(ra * 1000 + random.random() * max(1000, ra * 250))
    # Full jitter, floored at a tenth of the base so a run of small draws cannot hammer.
    return int(max(random.random() * ceiling, base / 10) * 1000)


def until(base, cap, failures, retry_after, why, log):
    # ticks_ms of the next attempt after the failures-th failure in a row; logs the delay.
    ms = delay(base, cap, failures, retry_after)
    log("backoff %d.%ds after %s (failure %d)" % (ms // 1000, ms % 1000 // 100, why, failures))
    return time.ticks_add(time.ticks_ms(), ms)


def judge(e, renewed, batch, crash=None):
    # The failure e (HTTPError: a refusal; OSError, ValueError: no usable answer) of a token
    # request (renewed is None) or of an upload of batch readings (renewed: a new token was
    # fetched for it already; crash: the post carried a crash report). Returns (then, why,
    # retry_after, auth): then -1: fetch a new token and send again; then -2: the crash report
    # is forgotten, send again; then > 0: send again with a batch this small; then 0: back off,
    # by the credentials' long cap if auth, no sooner than retry_after seconds if given.
    if crash and renewed is not None and getattr(e, "status", 0) in (400, 422):
        # A crash report the service refuses must not hold up the readings.
        import cold
        import crash as file  # crash.py, which keeps the report

        file.clear()
        cold.drop(file)
        return -2, "crash report refused (%d), dropped" % e.status, None, False
    if not isinstance(e, HTTPError):
        what = "token request" if renewed is None else "upload"
        return 0, "%s failed: %r" % (what, e), None, False
    s = e.status
    if renewed is None:
        # RFC 6749 §5.2: invalid_client (wrong secret, disabled board) gets a long cap, never
        # hammering; 429/503 (RFC 6585 §4, RFC 9110 §15.6.4) wait for Retry-After.
        why = "token refused: %d %s" % (s, e.error or "")
        return 0, why, e.retry_after if s in (429, 503) else None, s in (400, 401, 403)
    if s == 401 and not renewed:
        # RFC 6750 §3.1 invalid_token (expired, revoked key): one new token, one retry.
        return -1, "token rejected (%s), fetching a new one" % e.error, None, False
    why = "upload refused: %d %s" % (s, e.error or "")
    if s == 413 and batch > 1:
        return batch // 2, "%s, batch now %d" % (why, batch // 2), None, False
    return 0, why, e.retry_after, s in (401, 403)
