"""The registry's service layer on SQLite and PostgreSQL: every rule, every refusal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.registry import service
from provisioning.service.registry.service import DeviceNotFound, InvalidInput, MacConflict
from provisioning.store.db import make_engine, migrate, session_factory
from provisioning.store.models import AuditEvent, Client, DeviceState, Reading

ACTOR = "op_test"


@pytest.fixture
def session(db_url: str) -> Iterator[Session]:
    migrate(db_url)
    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        yield session
    engine.dispose()


@pytest.fixture
def hasher() -> SecretHasher:
    return SecretHasher(b"k" * 32)


def _snapshot(session: Session) -> tuple[list[tuple[object, ...]], int]:
    session.expire_all()
    clients: list[tuple[object, ...]] = [
        (c.client_id, c.lot, c.name, c.mac, c.enabled, c.secret_hash, c.deleted_at)
        for c in session.scalars(select(Client).order_by(Client.client_id))
    ]
    return clients, len(session.scalars(select(AuditEvent)).all())


def test_create_device_stores_only_a_hash_and_audits(
    session: Session, hasher: SecretHasher
) -> None:
    client, secret = service.create_device(
        session, hasher, ACTOR, "lot-7", " North gate ", "AA-BB-CC-DD-EE-01"
    )
    assert client.client_id.startswith("dev_")
    assert len(secret) >= 43  # 256 bits, URL-safe base64
    assert client.name == "North gate"
    assert client.mac == "aa:bb:cc:dd:ee:01"
    assert client.secret_hash and secret not in client.secret_hash
    assert hasher.verify(secret, client.secret_hash)
    event = session.scalars(select(AuditEvent)).one()
    assert (event.actor, event.action, event.target) == (ACTOR, "device.create", client.client_id)
    assert event.detail == {"lot": "lot-7", "name": "North gate", "mac": "aa:bb:cc:dd:ee:01"}


BAD_INPUT = [
    ("a/b", "n", None, "lot may contain only"),
    ("a+", "n", None, "lot may contain only"),
    ("#", "n", None, "lot may contain only"),
    ("lot 1", "n", None, "lot may contain only"),
    ("lot\x00", "n", None, "lot may contain only"),
    ("-lot", "n", None, "lot may contain only"),
    ("", "n", None, "lot must be 1 to 64"),
    ("x" * 65, "n", None, "lot must be 1 to 64"),
    ("lot", "   ", None, "name must be 1 to 128"),
    ("lot", "x" * 129, None, "name must be 1 to 128"),
    ("lot", "bad\nname", None, "control characters"),
    ("lot", "bad\u202ename", None, "control characters"),
    ("lot", "n", "aa:bb:cc:dd:ee", "six hex octets"),
    ("lot", "n", "aa:bb-cc:dd:ee:ff", "six hex octets"),
    ("lot", "n", "gg:bb:cc:dd:ee:ff", "six hex octets"),
    ("lot", "n", "ff:ff:ff:ff:ff:ff", "multicast"),
    ("lot", "n", "01:00:5e:00:00:01", "multicast"),
    ("lot", "n", "00:00:00:00:00:00", "not a board"),
]


def test_bad_input_is_refused_and_changes_nothing(session: Session, hasher: SecretHasher) -> None:
    # One database for all cases: validation is what is tested, and setup dominates the time.
    service.create_device(session, hasher, ACTOR, "lot", "existing")
    before = _snapshot(session)
    for lot, name, mac, complaint in BAD_INPUT:
        with pytest.raises(InvalidInput, match=complaint):
            service.create_device(session, hasher, ACTOR, lot, name, mac)
    assert _snapshot(session) == before


def test_mac_spellings_normalise_and_bind_one_board(session: Session, hasher: SecretHasher) -> None:
    first, _ = service.create_device(session, hasher, ACTOR, "lot", "a", "AABBCCDDEE02")
    before = _snapshot(session)
    for spelling in ("aa:bb:cc:dd:ee:02", "AA-BB-CC-DD-EE-02", "aabbccddee02"):
        with pytest.raises(MacConflict) as caught:
            service.create_device(session, hasher, ACTOR, "lot", "b", spelling)
        assert caught.value.client_id == first.client_id
        assert caught.value.status == 409
    assert _snapshot(session) == before
    found = service.find_by_mac(session, "AA:BB:CC:DD:EE:02")
    assert found is not None and found.client_id == first.client_id
    assert service.find_by_mac(session, "aa:bb:cc:dd:ee:03") is None


def test_get_list_and_filters_exclude_operators_and_deleted(
    session: Session, hasher: SecretHasher
) -> None:
    operator, _ = service.create_operator(session, hasher, ACTOR, "alice")
    a, _ = service.create_device(session, hasher, ACTOR, "north", "a", "02:00:00:00:00:0a")
    b, _ = service.create_device(session, hasher, ACTOR, "south", "b")
    c, _ = service.create_device(session, hasher, ACTOR, "north", "c")
    service.delete_device(session, ACTOR, c.client_id)

    ids = [row.client.client_id for row in service.list_devices(session).items]
    assert ids == [a.client_id, b.client_id]
    assert [r.client.client_id for r in service.list_devices(session, lot="north").items] == [
        a.client_id
    ]
    by_mac = service.list_devices(session, mac="02-00-00-00-00-0A").items
    assert [r.client.client_id for r in by_mac] == [a.client_id]
    for missing in (operator.client_id, c.client_id, "dev_nope"):
        with pytest.raises(DeviceNotFound):
            service.get_device(session, missing)


def test_pagination_walks_every_device_once(session: Session, hasher: SecretHasher) -> None:
    made = [service.create_device(session, hasher, ACTOR, "lot", f"d{i}")[0] for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        page = service.list_devices(session, limit=3, cursor=cursor)
        seen += [row.client.client_id for row in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [c.client_id for c in made]
    for bad in ("nonsense!", "W10", "e30"):
        with pytest.raises(InvalidInput, match="cursor"):
            service.list_devices(session, cursor=bad)
    with pytest.raises(InvalidInput, match="limit"):
        service.list_devices(session, limit=0)


def test_device_row_carries_latest_reading_and_health(
    session: Session, hasher: SecretHasher
) -> None:
    client, _ = service.create_device(session, hasher, ACTOR, "lot", "a")
    assert service.get_device_row(session, client.client_id).state is None
    session.add(
        DeviceState(
            device_id=client.client_id,
            last_seq=41,
            cars=12,
            ts=1000.0,
            received_at=1001.0,
            last_seen_at=1002.0,
            health={"rssi": -60},
            health_at=1003.0,
        )
    )
    session.commit()
    row = service.get_device_row(session, client.client_id)
    assert row.state is not None and (row.state.last_seq, row.state.cars) == (41, 12)
    assert service.list_devices(session).items[0].state is not None


def test_update_renames_and_moves_and_audits_changes(
    session: Session, hasher: SecretHasher
) -> None:
    client, _ = service.create_device(session, hasher, ACTOR, "lot", "a")
    service.update_device(session, ACTOR, client.client_id, lot="other", name="b")
    got = service.get_device(session, client.client_id)
    assert (got.lot, got.name) == ("other", "b")
    event = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert event is not None and event.action == "device.update"
    assert event.detail == {
        "changes": {"lot": {"from": "lot", "to": "other"}, "name": {"from": "a", "to": "b"}}
    }
    before = _snapshot(session)
    with pytest.raises(InvalidInput):
        service.update_device(session, ACTOR, client.client_id, lot="ok", name="\x07")
    with pytest.raises(DeviceNotFound):
        service.update_device(session, ACTOR, "dev_missing", name="x")
    assert _snapshot(session) == before


def test_disable_enable(session: Session, hasher: SecretHasher) -> None:
    client, _ = service.create_device(session, hasher, ACTOR, "lot", "a")
    assert service.disable(session, ACTOR, client.client_id).enabled is False
    assert service.enable(session, ACTOR, client.client_id).enabled is True
    actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
    assert actions == ["device.create", "device.disable", "device.enable"]


def test_rotate_secret_keeps_old_one_for_the_grace_period(
    session: Session, hasher: SecretHasher
) -> None:
    client, old = service.create_device(session, hasher, ACTOR, "lot", "a")
    client, new = service.rotate_secret(session, hasher, ACTOR, client.client_id, 60, now=5000.0)
    assert new != old
    assert hasher.verify(new, client.secret_hash)
    assert hasher.verify(old, client.previous_secret_hash)
    assert client.previous_secret_expires_at == 5060.0
    # Rotating again ends the first secret's grace: only one previous secret exists.
    client, newest = service.rotate_secret(session, hasher, ACTOR, client.client_id, 0)
    assert hasher.verify(newest, client.secret_hash)
    assert client.previous_secret_hash is None and client.previous_secret_expires_at is None
    detail = session.scalars(select(AuditEvent.detail).order_by(AuditEvent.id.desc())).first()
    assert detail == {"previous_valid_until": None}
    with pytest.raises(InvalidInput):
        service.rotate_secret(session, hasher, ACTOR, client.client_id, -1)


def test_delete_is_soft_frees_the_mac_and_keeps_readings(
    session: Session, hasher: SecretHasher
) -> None:
    client, _ = service.create_device(session, hasher, ACTOR, "lot", "a", "02:00:00:00:00:01")
    session.add(
        Reading(device_id=client.client_id, lot="lot", seq=1, cars=3, ts=None, received_at=1.0)
    )
    session.commit()
    service.delete_device(session, ACTOR, client.client_id)
    session.expire_all()
    row = session.get(Client, client.client_id)
    assert row is not None and row.deleted_at is not None and not row.enabled
    assert (row.mac, row.secret_hash, row.previous_secret_hash) == (None, None, None)
    assert session.scalars(select(Reading)).one().cars == 3
    with pytest.raises(DeviceNotFound):
        service.delete_device(session, ACTOR, client.client_id)
    again, _ = service.create_device(session, hasher, ACTOR, "lot", "a", "02:00:00:00:00:01")
    assert again.client_id != client.client_id
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "device.delete")).one()
    assert event.detail == {"lot": "lot", "name": "a", "mac": "02:00:00:00:00:01"}


def test_audit_pages_newest_first(session: Session, hasher: SecretHasher) -> None:
    client, _ = service.create_device(session, hasher, ACTOR, "lot", "a")
    for _ in range(4):
        service.disable(session, ACTOR, client.client_id)
    first = service.list_audit(session, limit=3)
    assert [e.action for e in first.items] == ["device.disable"] * 3
    assert first.next_cursor is not None
    rest = service.list_audit(session, limit=3, cursor=first.next_cursor)
    assert [e.action for e in rest.items] == ["device.disable", "device.create"]
    assert rest.next_cursor is None
    assert len(service.list_audit(session, target="dev_other").items) == 0


def test_a_lost_race_for_a_mac_is_a_conflict_not_a_crash(
    session: Session, hasher: SecretHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = service.create_device(session, hasher, ACTOR, "lot", "a", "02:00:00:00:00:09")
    before = _snapshot(session)
    # Another request registered the MAC between our check and our commit: the unique
    # constraint is the backstop, and the caller still learns which device has it.
    real = service.find_by_mac
    calls: list[str] = []

    def stale_check(s: Session, mac: str) -> Client | None:
        calls.append(mac)
        return None if len(calls) == 1 else real(s, mac)

    monkeypatch.setattr(service, "find_by_mac", stale_check)
    with pytest.raises(MacConflict) as caught:
        service.create_device(session, hasher, ACTOR, "lot", "b", "02:00:00:00:00:09")
    assert caught.value.client_id == first.client_id
    assert _snapshot(session) == before
