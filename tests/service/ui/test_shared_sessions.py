"""Dashboard sessions live in the database: three real instances on one PostgreSQL database
behind the shipped HAProxy (`balance leastconn`, no stickiness) serve one signed-in operator
whichever instance a request lands on, the one-time secret page included; on SQLite a restart
keeps the session; the store seals what it keeps and drops what expired (both databases)."""

from __future__ import annotations

import re
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from sqlalchemy import select

from provisioning.service.auth.kek import new_kek_text
from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.registry import service as registry
from provisioning.service.ui.session import MAX_PER_OPERATOR, Session, SessionStore
from provisioning.store.db import make_engine, migrate, session_factory
from provisioning.store.models import AuditEvent, UiSession
from tests.service.ui.test_session import _csrf, _sign_in
from tools.harness.haproxy import HAProxy
from tools.harness.net import free_port
from tools.harness.server import ServiceProcess


def _fleet(data: Path, db: str) -> tuple[tuple[str, str], str]:
    """An admin and one board in `db`; returns (admin credentials, board client ID)."""
    data.mkdir(parents=True, exist_ok=True)
    migrate(db)
    engine = make_engine(db)
    try:
        with session_factory(engine)() as session:
            hasher = SecretHasher.from_data_dir(data)
            admin, secret = registry.create_operator(session, hasher, "test", "ops")
            board, _ = registry.create_device(session, hasher, "test", "north", "gate")
            return (admin.client_id, secret), board.client_id
    finally:
        engine.dispose()


def _served_by(lb: HAProxy) -> dict[str, int]:
    """Requests each instance got, from HAProxy's own counters (`stot`)."""
    return {name: int(cols.get("stot") or 0) for name, cols in lb.server_stats().items()}


def test_a_session_is_served_by_every_instance_behind_haproxy(tmp_path: Path, pg_url: str) -> None:
    first = tmp_path / "a"
    admin, board = _fleet(first, pg_url)
    lb_port = free_port()
    # As deploy/ configures them: one database, key-encryption key, issuer (the balancer's
    # URL), secret-hash key; HAProxy the trusted proxy.
    env = {
        "PARK_KEK": new_kek_text(),
        "PARK_ISSUER": f"http://localhost:{lb_port}",
        "PARK_TRUSTED_PROXIES": "127.0.0.1",
        "PARK_AUTH_FAIL_AUDIT_WINDOW_S": "0.3",
    }
    with ExitStack() as stack:
        services = []
        for name in "abc":
            data = tmp_path / name
            if name != "a":
                data.mkdir()
                shutil.copy(first / "secret-hash.key", data / "secret-hash.key")
            services.append(stack.enter_context(ServiceProcess(data, db=pg_url, env=env)))
        ports = [s.port for s in services]
        lb = stack.enter_context(HAProxy(tmp_path / "lb", ports, port=lb_port))
        _wait_up(lb)
        http = stack.enter_context(httpx.Client(base_url=lb.url, timeout=10))
        # HAProxy replaces a client's forwarded headers with its own: the forged address is
        # not the one audited, the forged scheme does not make the cookie Secure.
        forged = {"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"}
        http.headers.update(forged)
        assert _sign_in(http, (admin[0], "wrong")).status_code == 401
        signed = _sign_in(http, admin)
        assert signed.status_code == 303
        assert signed.headers["set-cookie"].startswith("parkfleet_session=")
        assert "Secure" not in signed.headers["set-cookie"]
        before = _served_by(lb)
        # Many requests, spread by leastconn over the instances: every one signed in.
        for _ in range(12):
            page = http.get("/ui/boards")
            assert page.status_code == 200, page.status_code
            assert board in page.text
        spread = {name: n - before.get(name, 0) for name, n in _served_by(lb).items()}
        assert sum(1 for n in spread.values() if n) >= 2, spread
        # And on each instance directly, with the same cookie.
        cookie = http.cookies["parkfleet_session"]
        for service in services:
            with service.client() as direct:
                direct.cookies.set("parkfleet_session", cookie)
                assert direct.get("/ui/").status_code == 200

        # Rotate a secret through HAProxy; the one-time page works on whichever instance.
        csrf = _csrf(http.get(f"/ui/boards/{board}/rotate-secret").text)
        rotated = http.post(f"/ui/boards/{board}/rotate-secret", data={"csrf": csrf})
        assert rotated.status_code == 303, rotated.text
        assert rotated.headers["location"].endswith("/new-secret")
        with services[2].client() as direct:
            direct.cookies.set("parkfleet_session", cookie)
            shown = direct.get(rotated.headers["location"])
        assert shown.status_code == 200, shown.text
        secret = re.search(r'id="secret" readonly value="([A-Za-z0-9_-]{43})"', shown.text)
        assert secret, shown.text
        for _ in range(3):  # gone everywhere once shown
            assert http.get(rotated.headers["location"]).status_code == 410
        token = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(board, secret.group(1)),
        )
        assert token.status_code == 200, token.text

        time.sleep(1.0)  # the failure audit's window
        engine = make_engine(pg_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    select(AuditEvent.detail).where(AuditEvent.action == "auth.fail")
                ).all()
                issued = conn.execute(
                    select(AuditEvent.detail).where(AuditEvent.action == "token.issue")
                ).all()
        finally:
            engine.dispose()
        assert [row.detail["sources"] for row in rows] == [["127.0.0.1"]]
        sign_ins = [row.detail["sign_in_from"] for row in issued if "sign_in_from" in row.detail]
        assert sign_ins == ["127.0.0.1", "127.0.0.1"]  # two tokens for one admin's sign-in

        # Logout through HAProxy ends the session on every instance.
        csrf = _csrf(http.get("/ui/").text)
        assert http.post("/ui/logout", data={"csrf": csrf}).status_code == 303
        for service in services:
            with service.client() as direct:
                direct.cookies.set("parkfleet_session", cookie)
                assert direct.get("/ui/").status_code == 303


def _wait_up(lb: HAProxy, timeout: float = 30) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        states = lb.server_states()
        if states and all(s.startswith("UP") for s in states.values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"instances not UP behind HAProxy: {lb.server_states()}")


def test_a_session_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    admin, _board = _fleet(data, f"sqlite:///{data / 'parkfleet.db'}")
    port = None
    with ServiceProcess(data) as server, server.client() as http:
        port = server.port
        assert _sign_in(http, admin).status_code == 303
        cookie = http.cookies["parkfleet_session"]
    with ServiceProcess(data, port=port) as server, server.client() as http:
        http.cookies.set("parkfleet_session", cookie)
        assert http.get("/ui/").status_code == 200


def test_the_store_seals_and_expires_sessions(db_url: str) -> None:
    migrate(db_url)
    engine = make_engine(db_url)
    try:
        store = SessionStore(engine)
        now = time.time()
        live = Session("op_a", "admin", "eyJread.token", "eyJadmin.token", now + 60)
        cookie = store.create(live, now)
        with engine.connect() as conn:
            row = conn.execute(select(UiSession)).one()
        # Neither the cookie nor a token nor the CSRF token is in the row in clear.
        assert cookie not in row.key and b"eyJ" not in row.sealed
        assert live.csrf.encode() not in row.sealed
        other = SessionStore(engine)  # another instance
        seen = other.get(cookie)
        assert seen is not None and seen.read_token == "eyJread.token" and seen.csrf == live.csrf
        # The one-time secret: sealed, and taken once whichever instance asks first.
        store.keep_secret(live, "dev_1", "s3cret-value", None)
        with engine.connect() as conn:
            sealed = conn.execute(select(UiSession.new_secret)).scalar_one()
        assert sealed is not None and b"s3cret-value" not in sealed
        assert other.take_secret(seen) == ("dev_1", "s3cret-value", None)
        assert store.take_secret(live) is None
        # A wrong cookie opens nothing; an expired session is deleted when met or purged.
        assert other.get(cookie[:-2] + "xx") is None
        assert other.get(cookie, now=now + 61) is None
        for n in range(3):
            store.create(Session(f"op_{n}", "viewer", "r", None, now + 1), now)
        store.purge(now + 2 + 60)
        with engine.connect() as conn:
            assert conn.execute(select(UiSession)).all() == []
        # One operator keeps at most MAX_PER_OPERATOR sessions: the oldest go first.
        cookies = [
            store.create(Session("op_b", "viewer", "r", None, now + 60), now + n)
            for n in range(MAX_PER_OPERATOR + 2)
        ]
        assert store.get(cookies[0]) is None and store.get(cookies[1]) is None
        assert store.get(cookies[-1]) is not None
    finally:
        engine.dispose()
