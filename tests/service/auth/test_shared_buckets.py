"""Shared state through PostgreSQL: token buckets exact under concurrency, undone with their
transaction, refilled by the database's clock; change notifications and their TTL fallback."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text

from provisioning.service.auth.listen import APPLICATION_NAME
from provisioning.service.auth.ratelimit import SharedBuckets
from provisioning.store.db import make_engine, migrate, session_factory
from tests.service.auth.conftest import MakeAuth


def test_takes_are_exact_and_roll_back_with_their_transaction(pg_url: str) -> None:
    migrate(pg_url)
    engine = make_engine(pg_url)
    sessions = session_factory(engine)
    buckets = SharedBuckets(10, 3600.0, "issue:")  # one token a second
    try:
        with sessions.begin() as session:
            waits = buckets.take_many(session, ["a"] * 7 + ["b"] + ["a"] * 5)
        granted_a = [w == 0.0 for w in waits[:7] + waits[8:]]
        assert granted_a == [True] * 10 + [False] * 2
        assert waits[7] == 0.0  # another key has its own bucket
        assert all(0.0 < w <= 1.0 for w in waits if w)

        # A transaction that fails gives its tokens back.
        with pytest.raises(RuntimeError), sessions.begin() as session:
            assert buckets.take_many(session, ["b"] * 9) == [0.0] * 9
            raise RuntimeError
        with sessions.begin() as session:
            assert buckets.take_many(session, ["b"] * 9) == [0.0] * 9

        # Concurrent takes from many connections (instances) never grant more than the burst.
        granted: list[bool] = []
        lock = threading.Lock()

        def take() -> None:
            with sessions.begin() as session:
                outcome = buckets.take_many(session, ["c"] * 3)
            with lock:
                granted.extend(w == 0.0 for w in outcome)

        threads = [threading.Thread(target=take) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(granted) == 10, granted

        # Refill by the database's clock: pretend the last take was 2.5 s ago.
        with sessions.begin() as session:
            session.execute(text("UPDATE rate_buckets SET updated_at = updated_at - 2.5"))
            waits = buckets.take_many(session, ["c"] * 3)
        assert waits[:2] == [0.0, 0.0] and waits[2] > 0.0
    finally:
        engine.dispose()


def test_status_cache_falls_back_to_its_ttl_while_notifications_are_down(
    make_auth: MakeAuth, pg_url: str
) -> None:
    auth = make_auth(db=pg_url)
    listener = auth.ctx.listener
    assert listener is not None and listener.connected.wait(10)
    directory = auth.ctx.verifier.clients
    client_id, _secret = auth.device()
    assert directory.get(client_id, now=100.0) is not None
    # Listening: a cached status is trusted past the TTL (a notification would drop it) ...
    record = directory.get(client_id, now=100.0 + directory.ttl_s + 1)
    assert record is not None and record.active
    with auth.ctx.sessions() as session:  # another process's change, seen only by NOTIFY
        session.execute(
            text("UPDATE clients SET enabled = false WHERE client_id = :c"), {"c": client_id}
        )
        session.commit()
    deadline = time.monotonic() + 1.0
    while (found := directory.get(client_id)) is not None and found.active:
        assert time.monotonic() < deadline, "the notification did not arrive within 1 s"
        time.sleep(0.01)

    # The listening connection dies: the cache is forgotten and the TTL bounds it again.
    engine = auth.ctx.engine
    with engine.begin() as conn:
        killed = conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = :name AND datname = current_database()"
            ),
            {"name": APPLICATION_NAME},
        ).all()
    assert killed
    deadline = time.monotonic() + 5
    while listener.connected.is_set():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    directory.set_listening(False)  # as the listener does; idempotent
    assert directory.get(client_id, now=200.0) is not None
    with auth.ctx.sessions() as session:
        session.execute(
            text("UPDATE clients SET enabled = true WHERE client_id = :c"), {"c": client_id}
        )
        session.commit()
    # ... and it reconnects (backoff from 0.5 s).
    assert listener.connected.wait(5)
    found = directory.get(client_id)
    assert found is not None and found.active
