# Retry delays: exponential with full jitter (AWS Architecture Blog, "Exponential Backoff and
# Jitter"), so a fleet coming back from an outage spreads out instead of returning in step.
# A server's Retry-After (RFC 9110 §10.2.3) is a floor, with jitter on top.
import random
import time

try:
    import os

    random.seed(int.from_bytes(os.urandom(4), "little"))
except (ImportError, AttributeError, OSError):
    random.seed(time.ticks_us())


class Backoff:
    def __init__(self, base_s, cap_s):
        self.base = base_s
        self.cap = cap_s
        self.failures = 0  # consecutive, for the console

    def reset(self):
        self.failures = 0

    def next(self, retry_after=None):
        # Delay in milliseconds before the next attempt.
        self.failures += 1
        ceiling = min(self.cap, self.base * (1 << min(self.failures - 1, 20)))
        if retry_after is not None:
            # Honour the server, spread by up to a quarter of its delay (at least a second).
            ra = min(retry_after, 3600)  # a broken header must not park the board for days
            return int(ra * 1000 + random.random() * max(1000, ra * 250))
        # Full jitter, floored at a tenth of the base so a run of small draws cannot hammer.
        return int(max(random.random() * ceiling, self.base / 10) * 1000)
