"""SQL text of the authorization server (client rows, shared rate buckets, change
notifications), run through `sql.Tx` on the token path or on the listener's own connection."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from provisioning.store import sql
from provisioning.store.models import Client

# Change notifications between instances (migration 0005's triggers `pg_notify` on these).
CLIENTS_CHANNEL = "parkfleet_clients"  # payload: the client_id
KEYS_CHANNEL = "parkfleet_keys"
LISTEN_SQL = (f"LISTEN {CLIENTS_CHANNEL}", f"LISTEN {KEYS_CHANNEL}")
PING_SQL = "SELECT 1"


def client_rows(tx: sql.Tx, names: Sequence[str], ids: list[str]) -> list[tuple[Any, ...]]:
    """PostgreSQL: `(client_id, *names)` of the clients among `ids`, in one statement."""
    return sql.run(tx, _many_sql(tuple(names)), (ids,))


@lru_cache(maxsize=4)
def _many_sql(names: tuple[str, ...]) -> str:
    # The rows of a group of requests in one statement (PostgreSQL: `= ANY` of an array).
    return (
        f"SELECT client_id, {', '.join(names)} FROM {Client.__tablename__} "  # noqa: S608 - constants
        "WHERE client_id = ANY(?)"
    )


# The level of a row at the moment of this take (`EXCLUDED.updated_at`: the database's clock).
_REFILLED = "LEAST(%(capacity)s, b.level + (EXCLUDED.updated_at - b.updated_at) * %(rate)s)"
# Refill and take in one statement per group: every key's row is locked in key order (no
# deadlock between instances), refilled by the database's clock (instances on several hosts
# need not agree on the time), and `granted` says how many of the `n` asked for were given.
# Run straight on psycopg (the hot path's DBAPI transaction: store/sql.py), so in its
# `%(name)s` parameter style.
_TAKE_SQL = f"""
    INSERT INTO rate_buckets AS b (key, level, updated_at, granted)
    SELECT t.k, %(capacity)s - LEAST(t.n, FLOOR(%(capacity)s)),
           EXTRACT(EPOCH FROM clock_timestamp()), LEAST(t.n, FLOOR(%(capacity)s))
    FROM unnest(CAST(%(keys)s AS text[]), CAST(%(counts)s AS integer[])) AS t(k, n)
    ORDER BY t.k
    ON CONFLICT (key) DO UPDATE SET
        level = {_REFILLED} - LEAST(EXCLUDED.granted, FLOOR({_REFILLED})),
        granted = LEAST(EXCLUDED.granted, FLOOR({_REFILLED})),
        updated_at = EXCLUDED.updated_at
    RETURNING b.key, b.level, b.granted
    """  # noqa: S608 - only constants are formatted in; values are bound


def take_buckets(
    tx: sql.Tx, keys: list[str], counts: list[int], capacity: float, rate: float
) -> list[tuple[Any, ...]]:
    """PostgreSQL: take `counts[i]` tokens from bucket `keys[i]`; rows (key, level, granted)."""
    return sql.run_named(
        tx, _TAKE_SQL, {"keys": keys, "counts": counts, "capacity": capacity, "rate": rate}
    )
