# Retry delays: exponential with full jitter (AWS Architecture Blog, "Exponential Backoff and
# Jitter"), so a fleet coming back from an outage spreads out instead of returning in step.
# A server's Retry-After (RFC 9110 §10.2.3) is a floor, with jitter on top.
# A backoff is a plain list [base_s, cap_s, consecutive failures] that its owner (uplink.py,
# net.py) keeps and resets (failures = 0); this module computes the next delay (and applies it
# to the uplink), so it is loaded through cold.py after a failure and a healthy board does not
# hold its code.
import random
import time

try:
    import os

    random.seed(int.from_bytes(os.urandom(4), "little"))
except (ImportError, AttributeError, OSError):
    random.seed(time.ticks_us())


def next(b, retry_after=None):
    # Counts a failure in b; returns the delay in milliseconds before the next attempt.
    b[2] += 1
    base, cap, failures = b
    ceiling = min(cap, base * (1 << min(failures - 1, 20)))
    if retry_after is not None:
        # Honour the server, spread by up to a quarter of its delay (at least a second).
        ra = min(retry_after, 3600)  # a broken header must not park the board for days
        return int(ra * 1000 + random.random() * max(1000, ra * 250))
    # Full jitter, floored at a tenth of the base so a run of small draws cannot hammer.
    return int(max(random.random() * ceiling, base / 10) * 1000)


def fail(up, why, retry_after, auth, offline):
    # Uplink.fail: count the failure in the uplink's (auth) backoff, set retry_at, log it.
    now = time.ticks_ms()
    if offline and up.down_since is None:
        up.down_since = now
    b = up.auth_retry if auth else up.retry
    delay = next(b, retry_after)
    up.retry_at = time.ticks_add(now, delay)
    up.log("backoff %d.%ds after %s (failure %d)" % (delay // 1000, delay % 1000 // 100, why, b[2]))


def refused(up, e, renewed):
    # Uplink.upload's answer to a refused batch (HTTPError e): True to send again, False when
    # it backed off. renewed: a new token was already fetched for this batch.
    if e.status == 401 and not renewed:
        # RFC 6750 §3.1 invalid_token (expired, revoked key): one new token, one retry.
        up.log("token rejected (%s), fetching a new one" % e.error)
        up.token.drop()
        return up.get_token()
    why = "upload refused: %d %s" % (e.status, e.error or "")
    if e.status == 413 and up.batch > 1:
        up.batch //= 2
        up.log("%s, batch now %d" % (why, up.batch))
        return True
    fail(up, why, e.retry_after, e.status in (401, 403), False)
    return False
