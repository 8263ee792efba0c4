"""Per-client token buckets for the token endpoint.

Defaults (Settings: burst 10, 10 per hour) are generous for a board that asks once per token
lifetime and reboots now and then, and stop one that asks in a loop: Auth0's M2M token quota
exists for the same reason. Buckets live in memory per server process; the number of tracked
keys is bounded (least recently used dropped first), so a flood of made-up client IDs cannot
grow memory without limit.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class TokenBuckets:
    """Thread-safe token buckets keyed by client ID: `capacity` tokens, `per_hour` refill."""

    def __init__(self, capacity: int, per_hour: float, max_keys: int = 100_000) -> None:
        if capacity < 1 or per_hour <= 0:
            raise ValueError("token bucket needs capacity >= 1 and a positive refill rate")
        self.capacity = float(capacity)
        self.rate = per_hour / 3600.0  # tokens per second
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> level, t
        self._lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        level, last = self._buckets.get(key, (self.capacity, now))
        return min(self.capacity, level + (now - last) * self.rate)

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token for `key`: 0.0 if granted, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            level = self._level(key, now)
            if level >= 1.0:
                self._buckets[key] = (level - 1.0, now)
                self._buckets.move_to_end(key)
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
                return 0.0
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate

    def wait_time(self, key: str, now: float | None = None) -> float:
        """Seconds until `key` could take a token (0.0 if it can now), without taking one."""
        now = time.monotonic() if now is None else now
        with self._lock:
            level = self._level(key, now)
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate
