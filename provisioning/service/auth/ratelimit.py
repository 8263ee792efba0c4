"""Per-client token buckets for the token endpoint.

Defaults (Settings: burst 10, 10 per hour) are generous for a board that asks once per token
lifetime and reboots now and then, and stop one that asks in a loop: Auth0's M2M token quota
exists for the same reason. On SQLite (one process) buckets live in memory (`TokenBuckets`); the
number of tracked keys is bounded (least recently used dropped first), so a flood of made-up
client IDs cannot grow memory without limit. On PostgreSQL the issuance buckets are rows shared
by every instance (`SharedBuckets`), taken in the transaction that writes the issuance audit.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict

from sqlalchemy.orm import Session

from provisioning.store import auth_sql, sql


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

    def take(self, key: str, now: float | None = None, cost: float = 1.0) -> float:
        """Take `cost` tokens (at most the capacity) for `key`: 0.0 if granted, else the
        seconds until they are available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            level = self._level(key, now)
            if level >= cost:
                self._buckets[key] = (level - cost, now)
                self._buckets.move_to_end(key)
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
                return 0.0
            self._buckets[key] = (level, now)
            return (cost - level) / self.rate

    def wait_time(self, key: str, now: float | None = None) -> float:
        """Seconds until `key` could take a token (0.0 if it can now), without taking one."""
        now = time.monotonic() if now is None else now
        with self._lock:
            level = self._level(key, now)
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate


class SharedBuckets:
    """Token buckets in the database (`rate_buckets`), shared by every instance on one
    PostgreSQL database: taken inside the caller's transaction, so a take is undone with it."""

    def __init__(self, capacity: int, per_hour: float, prefix: str) -> None:
        if capacity < 1 or per_hour <= 0:
            raise ValueError("token bucket needs capacity >= 1 and a positive refill rate")
        self.capacity = float(capacity)
        self.rate = per_hour / 3600.0
        self.prefix = prefix  # several limits share the table

    def take_many(self, within: Session | sql.Tx, keys: list[str]) -> list[float]:
        """One token per entry of `keys` (repeats allowed), in order: 0.0 where granted, else
        the seconds until one is available. One statement, in the transaction of `within`."""
        tx = within if isinstance(within, sql.Tx) else sql.Tx.of(within.connection())
        counts = Counter(keys)
        rows = auth_sql.take_buckets(
            tx,
            [self.prefix + key for key in counts],
            list(counts.values()),
            self.capacity,
            self.rate,
        )
        left = {key.removeprefix(self.prefix): (granted, level) for key, level, granted in rows}
        waits = []
        for key in keys:
            granted, level = left[key]
            if granted > 0:
                left[key] = (granted - 1, level)
                waits.append(0.0)
            else:
                waits.append(max(1.0 - level, 0.0) / self.rate)
        return waits
