"""Storing counts and reading lots and devices back, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import Engine, func, select, text

from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.ingest import outbox, store
from provisioning.service.ingest.commit import CountsCommit
from provisioning.service.ingest.schemas import CountsBatch, Reading
from provisioning.service.registry import service
from provisioning.store import sql
from provisioning.store.db import make_engine, migrate, session_factory
from provisioning.store.models import DeviceState, OutboxMessage
from provisioning.store.models import Reading as ReadingRow

MakeDevice = Callable[[str], str]


def _migrated(url: str) -> Engine:
    migrate(url)
    return make_engine(url)


def _register(engine: Engine, lots: list[str]) -> list[str]:
    """One device per entry of `lots`, registered through the registry; their client_ids."""
    hasher = SecretHasher(b"k" * 32)
    with session_factory(engine)() as session:
        return [
            service.create_device(session, hasher, "op_test", lot, "b")[0].client_id for lot in lots
        ]


def batch(readings: list[Reading], health: dict[str, int | str] | None = None) -> CountsBatch:
    unique: dict[int, Reading] = {}
    for reading in readings:
        unique.setdefault(reading[0], reading)
    return CountsBatch(list(unique.values()), len(readings), None, health)


def ingest(
    engine: Engine, device: str, b: CountsBatch, at: float = 1000.0, fan_out: bool = False
) -> store.IngestResult:
    with sql.transaction(engine) as tx:
        return store.store_counts(tx, device, b, at, fan_out)


def queued(engine: Engine) -> list[outbox.Message]:
    """The outbox in id order, as the relay reads it."""
    reader = outbox.RelayReader(engine)
    try:
        return reader.take(10_000)
    finally:
        reader.close()


def stored(engine: Engine, device: str) -> list[tuple[int, int, float | None, float]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(ReadingRow.seq, ReadingRow.cars, ReadingRow.ts, ReadingRow.received_at)
            .where(ReadingRow.device_id == device)
            .order_by(ReadingRow.seq)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def test_each_reading_is_stored_once(engine: Engine, make_device: MakeDevice) -> None:
    dev = make_device("lot-a")
    first = ingest(engine, dev, batch([(1, 3, 10.5), (2, 4, None), (2, 9, None)]), at=100.0)
    assert (first.accepted, first.duplicates, first.lot) == (2, 1, "lot-a")
    # A retried upload (the board never saw the answer) is acknowledged and stored once.
    retry = ingest(engine, dev, batch([(1, 3, 10.5), (2, 4, None), (3, 5, 12.0)]), at=200.0)
    assert (retry.accepted, retry.duplicates) == (1, 2)
    assert stored(engine, dev) == [(1, 3, 10.5, 100.0), (2, 4, None, 100.0), (3, 5, 12.0, 200.0)]


def state(engine: Engine, device: str) -> DeviceState | None:
    """The device's state as the registry (`GET /admin/devices/{id}`) reads it."""
    with session_factory(engine)() as session:
        return service.get_device_row(session, device).state


def test_a_late_replay_does_not_replace_the_current_reading(
    engine: Engine, make_device: MakeDevice
) -> None:
    dev = make_device("lot-a")
    ingest(engine, dev, batch([(10, 7, None), (9, 1, None)]), at=100.0)
    ingest(engine, dev, batch([(5, 2, None)]), at=200.0)  # a late replay from the spool
    latest = state(engine, dev)
    assert latest is not None
    assert (latest.last_seq, latest.cars, latest.ts, latest.received_at) == (10, 7, None, 100.0)
    assert latest.last_seen_at == 200.0
    ingest(engine, dev, batch([(11, 0, 5.0)]), at=300.0)
    latest = state(engine, dev)
    assert latest is not None and (latest.last_seq, latest.cars, latest.ts) == (11, 0, 5.0)


def test_health_is_kept_with_last_seen(engine: Engine, make_device: MakeDevice) -> None:
    dev = make_device("lot-a")
    assert state(engine, dev) is None
    health: dict[str, int | str] = {"uptime_s": 61, "free_heap": 30000, "reset_cause": "wdt"}
    ingest(engine, dev, batch([], health), at=100.0)
    seen = state(engine, dev)
    assert seen is not None and seen.last_seq is None  # a health-only post is no reading
    ingest(engine, dev, batch([(1, 1, None)]), at=200.0)  # no health: the last one stays
    seen = state(engine, dev)
    assert seen is not None
    assert (seen.health, seen.health_at, seen.last_seen_at) == (health, 100.0, 200.0)
    ingest(engine, dev, batch([], {"uptime_s": 5, "rssi": -70}), at=300.0)
    seen = state(engine, dev)
    assert seen is not None and seen.health == {"uptime_s": 5, "rssi": -70}


def test_lot_totals_sum_each_devices_latest_reading(
    engine: Engine, make_device: MakeDevice
) -> None:
    a1, a2, b1 = make_device("lot-a"), make_device("lot-a"), make_device("lot-b")
    with engine.connect() as conn:
        empty = store.lot_detail(conn, "lot-a")
        assert empty is not None and empty["cars"] == 0  # a lot exists once a device does
        assert [d["seq"] for d in empty["devices"]] == [None, None]
        assert store.lot_detail(conn, "nowhere") is None
    ingest(engine, a1, batch([(1, 5, None), (2, 7, 1.0)]), at=10.0)
    ingest(engine, a2, batch([(1, 3, None)]), at=11.0)
    ingest(engine, b1, batch([(1, 40, None)]), at=12.0)
    with engine.connect() as conn:
        lot = store.lot_detail(conn, "lot-a")
        lots = store.list_lots(conn)
    assert lot is not None and lot["cars"] == 10
    assert {d["device_id"]: (d["cars"], d["seq"]) for d in lot["devices"]} == {
        a1: (7, 2),
        a2: (3, 1),
    }
    zones_only: dict[str, object] = {"baseline": 0, "since": None, "flows": [], "drift": False}
    assert lots == [
        {"lot": "lot-a", "cars": 10, "devices": 2, "counted": 10, "over_capacity": False}
        | zones_only,
        {"lot": "lot-b", "cars": 40, "devices": 1, "counted": 40, "over_capacity": False}
        | zones_only,
    ]
    # A deleted device stops counting; its token no longer stores anything.
    with session_factory(engine)() as session:
        service.delete_device(session, "op_test", a2)
    with engine.connect() as conn:
        lot = store.lot_detail(conn, "lot-a")
    assert lot is not None and lot["cars"] == 7 and len(lot["devices"]) == 1
    with pytest.raises(store.UnknownDevice):
        ingest(engine, a2, batch([(9, 1, None)]))


def test_readings_count_towards_the_lot_registered_at_receive_time(
    engine: Engine, make_device: MakeDevice
) -> None:
    dev = make_device("lot-a")
    ingest(engine, dev, batch([(1, 5, None)]))
    with session_factory(engine)() as session:
        service.update_device(session, "op_test", dev, lot="lot-b")  # its token still says lot-a
    assert ingest(engine, dev, batch([(2, 6, None)])).lot == "lot-b"
    with engine.connect() as conn:
        rows = conn.execute(
            select(ReadingRow.seq, ReadingRow.lot).where(ReadingRow.device_id == dev)
        ).all()
        assert sorted(tuple(r) for r in rows) == [(1, "lot-a"), (2, "lot-b")]
        assert store.lot_detail(conn, "lot-a") is None  # no device registered there any more
        lot_b = store.lot_detail(conn, "lot-b")
    assert lot_b is not None and lot_b["cars"] == 6


def test_disabled_device_stores_nothing(engine: Engine, make_device: MakeDevice) -> None:
    dev = make_device("lot-a")
    with session_factory(engine)() as session:
        service.disable(session, "op_test", dev)
    with pytest.raises(store.UnknownDevice):
        ingest(engine, dev, batch([(1, 1, None)]))
    assert stored(engine, dev) == []


def test_readings_page_in_seq_order(engine: Engine, make_device: MakeDevice) -> None:
    dev, other = make_device("lot-a"), make_device("lot-a")
    ingest(engine, dev, batch([(s, s % 7, None) for s in range(25, 0, -1)]))
    ingest(engine, other, batch([(s, 1, None) for s in range(30)]))
    seen: list[int] = []
    since: int | None = None
    with engine.connect() as conn:
        while True:
            page = store.device_readings(conn, dev, since, 10)
            assert page is not None
            seen += [r["seq"] for r in page["readings"]]
            since = page["next_since_seq"]
            if since is None:
                break
        assert store.device_readings(conn, "dev_nobody", None, 10) is None
        assert store.device_readings(conn, dev, 25, 10) == {
            "device_id": dev,
            "readings": [],
            "next_since_seq": None,
        }
    assert seen == list(range(1, 26))


def test_fan_out_queues_one_message_per_batch_and_the_lot_total(
    engine: Engine, make_device: MakeDevice
) -> None:
    a1, a2 = make_device("lot-a"), make_device("lot-a")
    ingest(engine, a2, batch([(1, 4, None)]), at=5.0)  # fan-out off: nothing queued
    assert queued(engine) == []
    ingest(engine, a1, batch([(1, 2, 1.5), (2, 3, None)]), at=10.0, fan_out=True)
    ingest(engine, a1, batch([(2, 3, None)]), at=11.0, fan_out=True)  # duplicate: no messages
    ingest(engine, a1, batch([(2, 3, None), (3, 1, 2.5)]), at=12.0, fan_out=True)  # only seq 3
    messages = queued(engine)
    assert [(m.topic, m.retain) for m in messages] == [
        (f"parking/lot-a/devices/{a1}/readings", False),
        ("parking/lot-a/occupancy", True),
        (f"parking/lot-a/devices/{a1}/readings", False),
        ("parking/lot-a/occupancy", True),
    ]
    assert json.loads(messages[0].payload) == {
        "lot": "lot-a",
        "device_id": a1,
        "received_at": 10.0,
        "readings": [{"seq": 1, "cars": 2, "ts": 1.5}, {"seq": 2, "cars": 3, "ts": None}],
    }
    assert json.loads(messages[1].payload) == {
        "lot": "lot-a",
        "cars": 7,
        "devices": 2,
        "updated_at": 10.0,
    }
    assert json.loads(messages[2].payload)["readings"] == [{"seq": 3, "cars": 1, "ts": 2.5}]
    assert json.loads(messages[3].payload)["cars"] == 5


def test_relay_reader_deletes_only_what_was_acknowledged(
    engine: Engine, make_device: MakeDevice
) -> None:
    dev = make_device("lot-r")
    for seq in range(5):
        ingest(engine, dev, batch([(seq, 1, None)]), at=1.0, fan_out=True)
    reader = outbox.RelayReader(engine)
    try:
        assert reader.claim()
        first = reader.take(4)
        assert len(first) == 4 and [m.id for m in first] == sorted(m.id for m in first)
        rest = reader.take(100)  # what is out already is not read twice
        assert len(rest) == 6 and rest[0].id > first[-1].id
        reader.acknowledged([first[0].id, first[1].id, first[3].id])  # first[2]: no PUBACK
        reader.unsent([first[2].id, *(m.id for m in rest)])
        again = reader.take(100)  # resent from the oldest unacknowledged, in id order
        assert [m.id for m in again] == [first[2].id, *(m.id for m in rest)]
        assert reader.take(100) == []
    finally:
        reader.close()
    with engine.connect() as conn:
        assert outbox.backlog(sql.Tx.of(conn), 2.0) == outbox.Backlog(7, 1.0)


def test_relay_reader_finds_a_row_committed_below_its_cursor(
    engine: Engine, make_device: MakeDevice
) -> None:
    """PostgreSQL takes an id at INSERT and shows the row at COMMIT; SQLite reuses the ids of
    deleted rows: either way a row can appear below what the relay has read."""
    dev = make_device("lot-c")
    ingest(engine, dev, batch([(1, 1, None)]), at=1.0, fan_out=True)
    ingest(engine, dev, batch([(2, 1, None)]), at=1.0, fan_out=True)
    with engine.begin() as conn:  # the second message, as if its transaction had not committed
        (late_id, topic, payload) = conn.execute(
            text("SELECT id, topic, payload FROM mqtt_outbox ORDER BY id LIMIT 1 OFFSET 1")
        ).one()
        conn.execute(text("DELETE FROM mqtt_outbox WHERE id = :id"), {"id": late_id})
    reader = outbox.RelayReader(engine)
    try:
        reader.claim()
        assert late_id not in [m.id for m in reader.take(100)]
        with engine.begin() as conn:  # ... and now it commits, below the reader's cursor
            conn.execute(
                text(
                    "INSERT INTO mqtt_outbox (id, topic, payload, retain, created_at) "
                    "VALUES (:id, :topic, :payload, false, 1.0)"
                ),
                {"id": late_id, "topic": topic, "payload": payload},
            )
        ingest(engine, dev, batch([(3, 1, None)]), at=3.0, fan_out=True)
        later = reader.take(100)
        assert later[0].id == late_id  # oldest first, nothing skipped
        assert [m.id for m in later] == sorted(m.id for m in later) and len(later) == 3
    finally:
        reader.close()


def test_rolled_back_batch_leaves_nothing(engine: Engine, make_device: MakeDevice) -> None:
    dev = make_device("lot-a")
    with pytest.raises(RuntimeError), sql.transaction(engine) as tx:
        store.store_counts(tx, dev, batch([(1, 1, None)]), 1.0, True)
        raise RuntimeError("the request failed after storing")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(OutboxMessage)).scalar() == 0
    assert stored(engine, dev) == []


def test_topic_levels_are_escaped() -> None:
    assert outbox.occupancy_topic("a/b+#%") == "parking/a%2Fb%2B%23%25/occupancy"


def test_queries_use_indexes_on_postgresql(pg_url: str) -> None:
    """With many readings, a device's page and a lot's total never scan `readings`."""
    engine = _migrated(pg_url)
    try:
        devices = _register(engine, [f"lot-{i % 4}" for i in range(20)])
        with engine.begin() as conn:
            for dev in devices:
                store.store_counts(
                    sql.Tx.of(conn), dev, batch([(s, 1, None) for s in range(500)]), 1.0, False
                )
                conn.execute(
                    text(
                        "INSERT INTO readings (device_id, lot, seq, cars, ts, received_at) "
                        "SELECT :d, 'x', g, g % 50, NULL, 1 FROM generate_series(500, 4999) g"
                    ),
                    {"d": dev},
                )
            conn.execute(text("ANALYZE"))
        with engine.connect() as conn:
            plan = "\n".join(
                conn.execute(
                    text(
                        "EXPLAIN SELECT seq, cars, ts, received_at, lot FROM readings "
                        "WHERE device_id = :d AND seq > :s ORDER BY seq LIMIT 100"
                    ),
                    {"d": devices[3], "s": 1000},
                ).scalars()
            )
            assert "uq_readings_device_seq" in plan and "Seq Scan" not in plan, plan
            page = store.device_readings(conn, devices[3], 1000, 100)
            assert page is not None and page["readings"][0]["seq"] == 1001
            lot = store.lot_detail(conn, "lot-1")
            assert lot is not None and len(lot["devices"]) == 5
    finally:
        engine.dispose()


def test_concurrent_writers_keep_lot_totals_and_order_on_postgresql(pg_url: str) -> None:
    """Four boards of one lot posting at once: the outbox, read in id order, ends with the true
    total and holds each board's readings in seq order (the per-lot advisory lock)."""
    engine = _migrated(pg_url)
    try:
        devices = _register(engine, ["busy"] * 4)

        def board(device: str) -> None:
            for seq in range(25):
                with sql.transaction(engine) as tx:
                    store.store_counts(tx, device, batch([(seq, seq % 9, None)]), 1.0, True)

        threads = [threading.Thread(target=board, args=(d,)) for d in devices]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        messages = queued(engine)
        with engine.connect() as conn:
            lot = store.lot_detail(conn, "busy")
        assert lot is not None and lot["cars"] == 4 * (24 % 9)
        totals = [json.loads(m.payload)["cars"] for m in messages if m.retain]
        assert len(totals) == 100 and totals[-1] == lot["cars"]
        for device in devices:
            seqs = [
                r["seq"]
                for m in messages
                if not m.retain and json.loads(m.payload)["device_id"] == device
                for r in json.loads(m.payload)["readings"]
            ]
            assert seqs == list(range(25))
    finally:
        engine.dispose()


def test_group_commit_answers_each_request_on_its_own(
    engine: Engine, make_device: MakeDevice
) -> None:
    """Posts arriving together share a commit (on PostgreSQL in the group's writer thread), yet
    each gets its own answer, and a refused one stores nothing while the others are stored. The
    outbox holds each post's readings in arrival order, then one total per lot of the group."""
    devices = [make_device(lot) for lot in ["lot-g"] * 4 + ["lot-f"]]
    woken: list[bool] = []
    group = CountsCommit(engine, fan_out=True, after_commit=lambda: woken.append(True))

    async def post_all() -> list[store.IngestResult | BaseException]:
        posts = [
            group.store(dev, batch([(1, n, None), (2, n, None)])) for n, dev in enumerate(devices)
        ]
        posts.append(group.store("dev_unknown", batch([(1, 1, None)])))
        posts.append(group.store(devices[0], batch([(2, 9, None), (3, 9, None)])))
        return await asyncio.gather(*posts, return_exceptions=True)

    try:
        results = asyncio.run(post_all())
    finally:
        group.close()
    assert [(r.accepted, r.duplicates) for r in results[:5]] == [(2, 0)] * 5  # type: ignore[union-attr]
    assert isinstance(results[5], store.UnknownDevice)
    assert (results[6].accepted, results[6].duplicates) == (1, 1)  # type: ignore[union-attr]
    assert woken == [True]  # one commit, one wake-up
    messages = [json.loads(m.payload) for m in queued(engine)]
    with engine.connect() as conn:
        lot = store.lot_detail(conn, "lot-g")
    assert lot is not None and lot["cars"] == 9 + 1 + 2 + 3
    # Each lot: its readings messages in arrival order, then its one total.
    assert [(m["lot"], m.get("device_id")) for m in messages] == [
        ("lot-f", devices[4]),
        ("lot-f", None),
        *[("lot-g", dev) for dev in devices[:4]],
        ("lot-g", devices[0]),
        ("lot-g", None),
    ]
    assert [r["seq"] for r in messages[-2]["readings"]] == [3]
    assert messages[-1]["cars"] == lot["cars"] and messages[1]["cars"] == 4
    assert stored(engine, devices[0])[-1][:2] == (3, 9)


@pytest.mark.parametrize("stray", [2**63 - 1, 1_000_009, 10 + 512, 2_000_000])
def test_a_stray_seq_never_pins_the_current_reading(
    engine: Engine, make_device: MakeDevice, stray: int
) -> None:
    """A board that posts one stray seq (a bit flipped in a spooled seq, a torn record, a bug),
    however near or far ahead, must not pin its lot's total: the stray is stored (nothing is
    lost) but held as suspect, and the board's next reading is current."""
    dev = make_device("lot-a")
    ingest(engine, dev, batch([(10, 7, None)]), at=100.0)
    ingest(engine, dev, batch([(stray, 99, None)]), at=200.0)
    held = state(engine, dev)
    assert held is not None and (held.last_seq, held.cars) == (10, 7)  # the stray is not current
    ingest(engine, dev, batch([(11, 3, None)]), at=300.0)
    resumed = state(engine, dev)
    assert resumed is not None and (resumed.last_seq, resumed.cars) == (11, 3)
    ingest(engine, dev, batch([(12, 4, None)]), at=400.0)
    with engine.connect() as conn:
        assert store.lot_detail(conn, "lot-a")["cars"] == 4  # type: ignore[index]
    assert [r[0] for r in stored(engine, dev)] == sorted([10, 11, 12, stray])


def test_a_jump_is_current_once_the_next_reading_confirms_it(
    engine: Engine, make_device: MakeDevice
) -> None:
    """An honest jump (a hole in the spool, a seq restarted from 0 by a wiped spool) costs one
    reading: within one post when the post carries the next one, else one post."""
    dev = make_device("lot-a")
    ingest(engine, dev, batch([(10, 7, None)]), at=100.0)
    ingest(engine, dev, batch([(5000, 1, None), (5001, 2, None)]), at=200.0)
    jumped = state(engine, dev)
    assert jumped is not None and (jumped.last_seq, jumped.cars) == (5001, 2)
    ingest(engine, dev, batch([(2_000_000, 5, None)]), at=300.0)
    ingest(engine, dev, batch([(2_000_001, 5, None)]), at=350.0)  # confirms the jump
    assert state(engine, dev).last_seq == 2_000_001  # type: ignore[union-attr]
    ingest(engine, dev, batch([(0, 6, None)]), at=400.0)  # far below: a restart, held too
    assert state(engine, dev).last_seq == 2_000_001  # type: ignore[union-attr]
    ingest(engine, dev, batch([(1, 8, None)]), at=500.0)  # follows 0: confirmed
    restarted = state(engine, dev)
    assert restarted is not None and (restarted.last_seq, restarted.cars) == (1, 8)
    assert [r[0] for r in stored(engine, dev)] == [0, 1, 10, 5000, 5001, 2_000_000, 2_000_001]


def test_update_offer_costs_no_query_of_its_own(
    engine: Engine, make_device: MakeDevice, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer offers the target version when the board runs another; a post
    without an agent report (the common case) reads the agent's row with the device's lot and
    runs no other statement on device_agent."""
    dev = make_device("lot-a")
    statements: list[str] = []
    real_run = sql.run

    def counting(tx: sql.Tx, template: str, params: object = ()) -> list[tuple[object, ...]]:
        statements.append(template)
        return real_run(tx, template, params)  # type: ignore[arg-type]

    monkeypatch.setattr(store.sql, "run", counting)
    reported = CountsBatch([(1, 3, None)], 1, None, None, agent={"version": "1.0.0"})
    assert ingest(engine, dev, reported).update is None  # no target: nothing to offer
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE device_agent SET target = '1.1.0', state = 'pending' WHERE device_id = :d"
            ),
            {"d": dev},
        )
    statements.clear()
    assert ingest(engine, dev, batch([(2, 4, None)])).update == "1.1.0"
    assert [s for s in statements if "device_agent" in s and "clients" not in s] == []
    assert ingest(engine, dev, batch([])).update == "1.1.0"  # a post with no reading, too
    # The board reports the new version on trial, then runs it confirmed: nothing to offer.
    on_trial = {"version": "1.1.0", "update": "installed"}
    assert ingest(engine, dev, CountsBatch([], 0, None, None, agent=on_trial)).update is None
    statements.clear()
    assert ingest(engine, dev, batch([(3, 5, None)])).update is None
    assert [s for s in statements if "device_agent" in s and "clients" not in s] == []
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT version, target, state FROM device_agent WHERE device_id = :d"), {"d": dev}
        ).one()
    assert tuple(row) == ("1.1.0", "1.1.0", "installed")
