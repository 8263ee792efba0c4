"""Who a request comes from, against the real service on both databases: sign-in limits per
browser address (never the service's own 127.0.0.1), forwarded headers believed only from a
trusted proxy, Secure cookies behind a TLS-terminating proxy, non-ASCII form fields and cookies."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from provisioning.common.scopes import ADMIN_AUDIENCE
from provisioning.store.db import make_engine, session_factory
from provisioning.store.models import AuditEvent
from tests.service.ui.test_session import _csrf
from tools.harness.clients import register_operator
from tools.harness.server import ServiceProcess

ATTACKER = "203.0.113.7"
OFFICE = "198.51.100.2"
# Failed authentications are audited once per window: short here, so the test reads them soon.
AUDIT_ENV = {"PARK_AUTH_FAIL_AUDIT_WINDOW_S": "0.3"}


def _audit(db: str, action: str) -> list[AuditEvent]:
    engine = make_engine(db)
    try:
        with session_factory(engine)() as session:
            rows = session.scalars(select(AuditEvent).where(AuditEvent.action == action))
            return list(rows)
    finally:
        engine.dispose()


def _sources(db: str) -> set[str]:
    """Every address the failure audit named."""
    return {s for row in _audit(db, "auth.fail") if row.detail for s in row.detail["sources"]}


def _sign_in(
    http: httpx.Client, who: tuple[str, str], headers: dict[str, str] | None = None
) -> httpx.Response:
    form = http.get("/ui/login", headers=headers)
    return http.post(
        "/ui/login",
        data={"csrf": _csrf(form.text), "client_id": who[0], "client_secret": who[1]},
        headers=headers,
    )


def _token(http: httpx.Client, who: tuple[str, str], **headers: str) -> httpx.Response:
    form = {"grant_type": "client_credentials", "audience": ADMIN_AUDIENCE}
    return http.post("/oauth/token", data=form, auth=who, headers=headers)


def test_failed_sign_ins_limit_the_browser_not_the_service(tmp_path: Path, db_url: str) -> None:
    data = tmp_path / "data"
    who = register_operator(data, db=db_url)
    args = ["--trusted-proxy", "127.0.0.1"]
    with ServiceProcess(data, db=db_url, extra_args=args, env=AUDIT_ENV) as server:
        attacker = {"X-Forwarded-For": ATTACKER}
        with server.client() as http:
            # Made-up client IDs: only the address's sign-in limit (burst 20) can refuse them.
            statuses = [
                _sign_in(http, (f"op_guess{n}", "wrong"), attacker).status_code for n in range(21)
            ]
            assert statuses[:20] == [401] * 20 and statuses[20] == 429, statuses
            refused = _sign_in(http, who, attacker)  # even the right secret, from there
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        with server.client() as http:
            # Another browser signs in; the in-process exchange spent nothing of 127.0.0.1's:
            # a local client's wrong secret is still a plain 401, its right one a token.
            assert _sign_in(http, who, {"X-Forwarded-For": OFFICE}).status_code == 303
            assert _token(http, (who[0], "wrong")).status_code == 401
            # A sign-in is not an issuance: seven in a row leave the operator's whole bucket
            # (burst 10) for its own token requests, which are still limited.
            for _ in range(7):
                assert _sign_in(http, who, {"X-Forwarded-For": OFFICE}).status_code == 303
            assert [_token(http, who).status_code for _ in range(10)] == [200] * 10
            assert _token(http, who).status_code == 429
            # Successful sign-ins have a bound of their own per operator (burst 30): each
            # writes a session and two audited issuances.
            office = {"X-Forwarded-For": OFFICE}
            statuses = [_sign_in(http, who, office).status_code for _ in range(23)]
            assert statuses == [303] * 22 + [429], statuses
        time.sleep(1.0)  # the failure audit's window
    failures = _audit(db_url, "auth.fail")
    unknown = [row for row in failures if row.target is None]
    assert unknown and all(row.detail and row.detail["sources"] == [ATTACKER] for row in unknown)
    assert sum(row.detail["count"] for row in unknown if row.detail) == 20
    mine = [row for row in failures if row.target == who[0]]
    assert mine and all(row.detail and row.detail["sources"] == ["127.0.0.1"] for row in mine)
    signed = [row.detail for row in _audit(db_url, "token.issue") if row.detail]
    assert sum(1 for detail in signed if detail.get("sign_in_from") == OFFICE) == 60


def test_forwarded_headers_are_believed_only_from_a_trusted_proxy(
    tmp_path: Path, db_url: str
) -> None:
    data = tmp_path / "data"
    register_operator(data, db=db_url)

    def guesses(server: ServiceProcess, first: int) -> list[int]:
        with server.client() as http:
            return [
                _token(
                    http, (f"op_nobody{n}", "wrong"), **{"X-Forwarded-For": f"10.9.{n}.1"}
                ).status_code
                for n in range(first, first + 21)
            ]

    # uvicorn's default believes any local process; here nobody is trusted by default.
    with ServiceProcess(data, db=db_url, env=AUDIT_ENV) as server:
        statuses = guesses(server, 0)
        # Every forged address is the one key 127.0.0.1: its 20 failures are spent.
        assert statuses[:20] == [401] * 20 and statuses[20] == 429, statuses
        time.sleep(1.0)
    assert _sources(db_url) == {"127.0.0.1"}

    with ServiceProcess(
        data, db=db_url, extra_args=["--trusted-proxy", "127.0.0.1"], env=AUDIT_ENV
    ) as server:
        statuses = guesses(server, 100)
        assert statuses == [401] * 21, statuses  # each its own address behind the proxy
        time.sleep(1.0)
    assert "10.9.100.1" in _sources(db_url)


def _cookie_of(response: httpx.Response) -> str:
    assert response.status_code == 303, response.text
    return str(response.headers["set-cookie"])


def test_cookies_are_secure_when_the_public_url_is_https(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = f"sqlite:///{data / 'parkfleet.db'}"
    who = register_operator(data, db=db)
    https = {"X-Forwarded-Proto": "https"}
    trusted = ["--trusted-proxy", "127.0.0.1"]
    with ServiceProcess(data, extra_args=trusted) as server, server.client() as http:
        # Over HTTPS at the trusted proxy: Secure and `__Host-` (RFC 6265bis §4.1.3.2).
        login = http.get("/ui/login", headers=https)
        assert login.headers["set-cookie"].startswith("__Host-parkfleet-login=")
        signed = http.post(
            "/ui/login",
            data={"csrf": _csrf(login.text), "client_id": who[0], "client_secret": who[1]},
            headers={**https, "Cookie": login.headers["set-cookie"].split(";")[0]},
        )
        cookie = _cookie_of(signed)
        assert cookie.startswith("__Host-parkfleet=") and "Secure" in cookie
        assert "Domain" not in cookie and "Path=/" in cookie
        page = http.get("/ui/", headers={**https, "Cookie": cookie.split(";")[0]})
        assert page.status_code == 200
        # HSTS and nosniff once each, from the edge, not again from the dashboard.
        assert page.headers.get_list("strict-transport-security") == ["max-age=31536000"]
        assert page.headers.get_list("x-content-type-options") == ["nosniff"]
        # The same proxy over plain HTTP: no Secure flag, and no HSTS.
        cookie = _cookie_of(_sign_in(http, who))
        assert cookie.startswith("parkfleet_session=") and "Secure" not in cookie
    with ServiceProcess(data) as server, server.client() as http:
        # Nobody trusted: a client's X-Forwarded-Proto changes nothing.
        login = http.get("/ui/login", headers=https)
        assert "Secure" not in login.headers["set-cookie"]
        assert "strict-transport-security" not in login.headers
    with (
        ServiceProcess(data, extra_args=["--issuer", "https://parkfleet.example"]) as server,
        server.client() as http,
    ):
        # The public URL is HTTPS (the TLS-terminating proxy's): Secure whatever the hop.
        login = http.get("/ui/login")
        assert login.headers["set-cookie"].startswith("__Host-parkfleet-login=")
        assert "Secure" in login.headers["set-cookie"]


def _post(http: httpx.Client, path: str, body: bytes, cookie: bytes | None = None) -> Any:
    headers: dict[str, Any] = {"Content-Type": "application/x-www-form-urlencoded"}
    if cookie is not None:
        headers["Cookie"] = cookie
    return http.post(path, content=body, headers=headers)


def test_non_ascii_csrf_fields_and_cookies_are_refused_not_500(tmp_path: Path) -> None:
    data = tmp_path / "data"
    who = register_operator(data)
    with ServiceProcess(data) as server, httpx.Client(base_url=server.url, timeout=10) as bare:
        for csrf in (b"%C3%A9", b"%ED%A0%80", b"%FF"):
            # A non-ASCII field against an ASCII cookie, and the other way round.
            answer = _post(bare, "/ui/login", b"csrf=" + csrf, b"parkfleet_login=abc")
            assert answer.status_code == 403, answer.text
        for cookie in (b"parkfleet_login=\xc3\xa9", b"parkfleet_login=\xff\xfe"):
            answer = _post(bare, "/ui/login", b"csrf=abc&client_id=a&client_secret=b", cookie)
            assert answer.status_code == 403, answer.text
            answer = _post(bare, "/ui/login", "csrf=é".encode(), cookie)
            assert answer.status_code in (400, 403), answer.text
        with server.client() as http:
            assert _sign_in(http, who).status_code == 303
            session = http.cookies["parkfleet_session"]
            jar = b"parkfleet_session=" + session.encode()
            for path in ("/ui/logout", "/ui/boards/dev_x/disable"):
                answer = _post(bare, path, b"csrf=%C3%A9", jar)
                assert answer.status_code == 403, (path, answer.text)
            # A non-ASCII session cookie is no session: to the login page, not a 500.
            answer = bare.get("/ui/", headers={"Cookie": b"parkfleet_session=\xc3\xa9\xff"})
            assert answer.status_code == 303
            assert http.get("/ui/").status_code == 200  # the real session is untouched


def test_trusted_proxies_are_addresses_or_networks(tmp_path: Path) -> None:
    from provisioning.common.errors import ParkctlError
    from provisioning.service.config import from_flags

    settings = from_flags({"data_dir": tmp_path, "trusted_proxies": " 10.0.0.1, 10.1.0.0/16,"})
    assert settings.trusted_proxy_list == ["10.0.0.1", "10.1.0.0/16"]
    assert from_flags({"data_dir": tmp_path}).trusted_proxy_list == []
    with pytest.raises(ParkctlError, match="--trusted-proxy / PARK_TRUSTED_PROXIES"):
        from_flags({"data_dir": tmp_path, "trusted_proxies": "haproxy.local"})


def test_workers_believe_forwarded_headers_only_from_a_trusted_proxy(
    tmp_path: Path, pg_url: str
) -> None:
    """`--workers N` builds each worker's server from the same settings: the same rule there."""
    data = tmp_path / "data"
    register_operator(data, db=pg_url)

    def forged(server: ServiceProcess, first: int) -> None:
        with server.client() as http:
            for n in range(first, first + 6):
                answer = _token(http, (f"op_w{n}", "wrong"), **{"X-Forwarded-For": f"10.8.{n}.1"})
                assert answer.status_code == 401, answer.text

    workers = ["--workers", "2"]
    with ServiceProcess(data, db=pg_url, extra_args=workers, env=AUDIT_ENV) as server:
        forged(server, 0)
        time.sleep(1.0)
    assert _sources(pg_url) == {"127.0.0.1"}
    trusted = [*workers, "--trusted-proxy", "127.0.0.1"]
    with ServiceProcess(data, db=pg_url, extra_args=trusted, env=AUDIT_ENV) as server:
        forged(server, 100)
        time.sleep(1.0)
    # The audit keeps up to 5 addresses per row (and window, and process).
    assert len({f"10.8.{n}.1" for n in range(100, 106)} & _sources(pg_url)) >= 5
