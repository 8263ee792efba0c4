"""Lot history: the rollup written on the ingest path answers exactly what the
definition says (each board's latest reading before t, summed), on SQLite and PostgreSQL;
the migration's backfill builds the same rollup; bad ranges are refused."""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text

from provisioning.service.ingest import store
from provisioning.service.ingest.schemas import CountsBatch
from provisioning.service.lots import history
from provisioning.service.registry import service
from provisioning.store import sql
from provisioning.store.db import session_factory
from provisioning.store.models import Client
from tests.service.ingest.conftest import ACTOR

# The migration that adds the rollup fills it from the readings already stored.
ROLLUP_MIGRATION = importlib.import_module(
    "provisioning.store.migrations.versions.0003_occupancy_rollup"
)

T0 = 1_800_000_000  # a multiple of 3600


def _post(
    engine: Engine, device: str, readings: list[tuple[int, int, float | None]], at: float
) -> None:
    batch = CountsBatch(readings=readings, received=len(readings), device_id=None, health=None)
    with sql.transaction(engine) as tx:
        store.store_counts(tx, device, batch, at, False)


def _expected(
    posts: list[tuple[str, int, int, float]], times: list[int], ends: dict[str, float]
) -> list[int | None]:
    """The definition, by brute force over every reading: (device, seq, cars, at)."""
    out: list[int | None] = []
    for t in times:
        latest: dict[str, tuple[float, int, int]] = {}
        for device, seq, cars, at in posts:
            if at < t and (device not in latest or (at, seq) > latest[device][:2]):
                latest[device] = (at, seq, cars)
        counted = {d: v for d, v in latest.items() if t <= ends.get(d, float("inf"))}
        out.append(sum(v[2] for v in counted.values()) if counted else None)
    return out


def test_history_matches_the_definition(engine: Engine, make_device: Callable[[str], str]) -> None:
    rng = random.Random(11)
    devices = [make_device("north") for _ in range(3)]
    posts: list[tuple[str, int, int, float]] = []
    for n, device in enumerate(devices):
        seq = 0
        at = float(T0 + 7 + n)
        while at < T0 + 4 * 3600:
            batch: list[tuple[int, int, float | None]] = []
            for _ in range(rng.randint(1, 6)):
                seq += 1
                cars = rng.randint(0, 50)
                batch.append((seq, cars, at))
                posts.append((device, seq, cars, at))
                at += rng.choice((10, 45, 130, 700))
            _post(engine, device, batch, at)
    # A board without a clock: its readings count at the server's time.
    clockless = make_device("north")
    _post(engine, clockless, [(1, 5, None)], T0 + 1800.5)
    posts.append((clockless, 1, 5, T0 + 1800.5))
    # A late replay from a spool: an older reading arriving after newer ones changes only
    # its own bucket, and only where it is the latest there.
    _post(engine, devices[0], [(10_000, 44, T0 + 100.0)], T0 + 5 * 3600)
    posts.append((devices[0], 10_000, 44, T0 + 100.0))
    # A deleted board counts until it was deleted.
    with session_factory(engine)() as session:
        service.delete_device(session, ACTOR, devices[2])
        deleted = session.get(Client, devices[2])
        assert deleted is not None and deleted.deleted_at is not None
        # Today is before T0 + 2 h: the board stops counting from its deletion.
        ends = {devices[2]: T0 + 2 * 3600.0}
        deleted.deleted_at = ends[devices[2]]
        session.commit()
    # Readings far from the range's start, so the carried-forward value matters.
    for step in (60, 300, 600, 3600, 7200):
        times = history.points(T0 - 3600, T0 + 6 * 3600, step)
        with engine.connect() as conn:
            got = history.lot_history(conn, "north", times, step)
        assert got == _expected(posts, times, ends), step
    with engine.connect() as conn:
        assert history.lot_history(conn, "south", [T0, T0 + 60], 60) == [None, None]

    # The migration's backfill from `readings` builds exactly what the ingest path wrote.
    query = text("SELECT lot, res, device_id, bucket, cars, at, seq FROM occupancy_rollup")
    with engine.begin() as conn:
        written = sorted(conn.execute(query).all())
        conn.execute(text("DELETE FROM occupancy_rollup"))
        ROLLUP_MIGRATION.backfill(conn)
        assert sorted(conn.execute(query).all()) == written
    assert len(written) > 0


def test_a_moved_board_stops_counting_in_its_old_lot(
    engine: Engine, make_device: Callable[[str], str]
) -> None:
    board = make_device("north")
    _post(engine, board, [(1, 7, T0 + 30.0)], T0 + 30)
    with session_factory(engine)() as session:
        service.update_device(session, ACTOR, board, lot="south")
    _post(engine, board, [(2, 9, T0 + 7200.0)], T0 + 7200)
    times = [T0, T0 + 3600, T0 + 7200, T0 + 3 * 3600]
    with engine.connect() as conn:
        assert history.lot_history(conn, "north", times, 3600) == [None, 7, None, None]
        assert history.lot_history(conn, "south", times, 3600) == [None, None, None, 9]


@pytest.mark.parametrize(
    ("start", "end", "step", "message"),
    [
        (T0, T0 - 1, 60, "to must be after from"),
        (T0, T0 + 3600, 90, "multiple of 60"),
        (T0, T0 + 86400 * 30, 60, "more than 2000 points"),
    ],
)
def test_bad_ranges(start: float, end: float, step: int, message: str) -> None:
    with pytest.raises(history.BadRange, match=message):
        history.points(start, end, step)


def test_times_parse_as_epoch_or_iso8601() -> None:
    assert history.parse_time("1800000000", "from") == T0
    assert history.parse_time("2027-01-15T08:00:00Z", "from") == T0
    assert history.parse_time("2027-01-15T09:00:00+01:00", "from") == T0
    assert history.parse_time("2027-01-15T08:00:00", "from") == T0  # UTC
    for bad in ("yesterday", "nan", "-5", "1e300"):
        with pytest.raises(history.BadRange):
            history.parse_time(bad, "from")
    assert history.default_step(86400) == 300
    assert history.default_step(30 * 86400) == 3600


def test_the_migration_fills_the_rollup_from_stored_readings(db_url: str) -> None:
    """A database with readings from before the rollup existed gets its history at upgrade."""
    from alembic import command

    from provisioning.store.db import alembic_config, make_engine

    command.upgrade(alembic_config(db_url), "0002")
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO clients (client_id, kind, name, lot, enabled, created_at, "
                    "updated_at) VALUES ('dev_a', 'device', 'a', 'north', TRUE, 0, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO readings (device_id, lot, seq, cars, ts, received_at) VALUES "
                    "('dev_a', 'north', 1, 3, :t, :t), ('dev_a', 'north', 2, 8, NULL, :u)"
                ),
                {"t": T0 + 5.0, "u": T0 + 3700.0},
            )
        command.upgrade(alembic_config(db_url), "head")
        with engine.connect() as conn:
            times = [T0, T0 + 3600, T0 + 7200]
            assert history.lot_history(conn, "north", times, 3600) == [None, 3, 8]
    finally:
        engine.dispose()
