"""POST /oauth/token: the client credentials grant, its errors and its response (RFC 6749 §4.4,
§5; RFC 9068; RFC 8707)."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qsl, quote_plus

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from provisioning.common.scopes import (
    ADMIN_AUDIENCE,
    COUNTS_READ,
    COUNTS_WRITE,
    DEVICES_ADMIN,
    INGEST_AUDIENCE,
    RELEASES_READ,
)
from provisioning.service.auth.clients import parse_basic
from provisioning.service.auth.errors import InvalidRequest
from provisioning.service.auth.tokens import _form_pairs
from provisioning.service.registry import service as registry
from provisioning.store.models import AuditEvent
from tests.service.auth.conftest import ISSUER, Auth, MakeAuth, jwt_parts
from tools.harness.server import ServiceProcess

GRANT = {"grant_type": "client_credentials"}


def basic(client_id: str, secret: str) -> str:
    # RFC 6749 §2.3.1: form-urlencode each part, then base64.
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def post_basic(
    auth: Auth,
    client_id: str,
    secret: str,
    data: dict[str, str] | None = None,
    json: dict[str, str] | None = None,
) -> httpx.Response:
    """POST /oauth/token with HTTP Basic client authentication and a form or JSON body."""
    response: httpx.Response = auth.http.post(
        "/oauth/token", data=data, json=json, headers={"Authorization": basic(client_id, secret)}
    )
    return response


def assert_error(response: object, status: int, error: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"] == error
    assert isinstance(body.get("error_description"), str)
    assert response.headers["cache-control"] == "no-store"  # type: ignore[attr-defined]


def test_device_gets_an_es256_at_jwt_with_rfc9068_claims(auth_any_db: Auth) -> None:
    auth = auth_any_db
    client_id, secret = auth.device(lot="north")
    response = auth.http.post(
        "/oauth/token", data={**GRANT, "client_id": client_id, "client_secret": secret}
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}  # no refresh token
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    assert body["scope"] == f"{COUNTS_WRITE} {RELEASES_READ}"  # releases: OTA updates
    header, claims = jwt_parts(body["access_token"])
    assert header["alg"] == "ES256"
    assert header["typ"] == "at+jwt"
    assert header["kid"] in {
        k["kid"] for k in auth.http.get("/.well-known/jwks.json").json()["keys"]
    }
    assert claims["iss"] == ISSUER
    assert claims["sub"] == claims["client_id"] == client_id
    assert claims["aud"] == INGEST_AUDIENCE
    assert claims["scope"] == f"{COUNTS_WRITE} {RELEASES_READ}"
    assert claims["lot"] == "north"
    assert claims["exp"] - claims["iat"] == 86400
    assert abs(claims["iat"] - time.time()) < 5
    assert len(body["access_token"]) < 600  # small enough for a board's RAM


def test_jti_is_unique(auth: Auth) -> None:
    client_id, secret = auth.device()
    jtis = {jwt_parts(auth.token(client_id, secret))[1]["jti"] for _ in range(5)}
    assert len(jtis) == 5


def test_json_body_and_basic_auth_work(auth: Auth) -> None:
    client_id, secret = auth.device()
    response = post_basic(auth, client_id, secret, json={**GRANT, "audience": INGEST_AUDIENCE})
    assert response.status_code == 200, response.text
    response = auth.http.post(
        "/oauth/token", json={**GRANT, "client_id": client_id, "client_secret": secret}
    )
    assert response.status_code == 200, response.text


def test_basic_credentials_are_form_urlencoded_before_base64() -> None:
    header = basic("op_a+b:c", "s%e cr:et")
    assert parse_basic(header) == ("op_a+b:c", "s%e cr:et")
    for bad in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer x"):
        with pytest.raises(InvalidRequest):
            parse_basic(bad)


def test_wrong_secret_is_invalid_client_with_basic_challenge(auth: Auth) -> None:
    client_id, secret = auth.device()
    response = post_basic(auth, client_id, secret + "x", data=GRANT)
    assert_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"] == 'Basic realm="parkfleet"'
    assert secret not in response.text
    # client_secret_post: 401 too, but no Basic challenge the client did not use.
    response = auth.http.post(
        "/oauth/token", data={**GRANT, "client_id": client_id, "client_secret": "nope"}
    )
    assert_error(response, 401, "invalid_client")
    assert "www-authenticate" not in response.headers


def test_unknown_missing_disabled_and_deleted_clients_are_invalid_client(auth: Auth) -> None:
    assert_error(auth.token_response("dev_nobody", "x" * 43), 401, "invalid_client")
    assert_error(auth.http.post("/oauth/token", data=GRANT), 401, "invalid_client")
    client_id, secret = auth.device()
    with auth.ctx.sessions() as session:
        registry.disable(session, "test", client_id)
    assert_error(auth.token_response(client_id, secret), 401, "invalid_client")
    with auth.ctx.sessions() as session:
        registry.enable(session, "test", client_id)
    assert auth.token_response(client_id, secret).status_code == 200
    with auth.ctx.sessions() as session:
        registry.delete_device(session, "test", client_id)
    assert_error(auth.token_response(client_id, secret), 401, "invalid_client")


def test_two_authentication_methods_at_once_are_invalid_request(auth: Auth) -> None:
    client_id, secret = auth.device()
    response = post_basic(auth, client_id, secret, data={**GRANT, "client_secret": secret})
    assert_error(response, 400, "invalid_request")


def test_grant_type_is_required_and_only_client_credentials(auth: Auth) -> None:
    client_id, secret = auth.device()
    creds = {"client_id": client_id, "client_secret": secret}
    assert_error(auth.http.post("/oauth/token", data=creds), 400, "invalid_request")
    response = auth.http.post("/oauth/token", data={**creds, "grant_type": "password"})
    assert_error(response, 400, "unsupported_grant_type")


def test_repeated_parameters_are_invalid_request(auth: Auth) -> None:
    client_id, secret = auth.device()
    headers = {
        "Authorization": basic(client_id, secret),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    form = b"grant_type=client_credentials&scope=counts%3Awrite&scope=counts%3Awrite"
    response = auth.http.post("/oauth/token", content=form, headers=headers)
    assert_error(response, 400, "invalid_request")
    headers["Content-Type"] = "application/json"
    body = b'{"grant_type": "client_credentials", "grant_type": "client_credentials"}'
    assert_error(
        auth.http.post("/oauth/token", content=body, headers=headers), 400, "invalid_request"
    )


def test_empty_parameters_count_as_absent(auth: Auth) -> None:
    client_id, secret = auth.device()
    response = auth.token_response(client_id, secret, scope="", audience="")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == f"{COUNTS_WRITE} {RELEASES_READ}"


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/x-www-form-urlencoded", b"grant_type=client_credentials&\xff=1", 400),
        ("application/x-www-form-urlencoded", b"grant_type=%ff%fe", 400),
        ("application/x-www-form-urlencoded", b"grant_type", 400),
        ("application/x-www-form-urlencoded; charset=latin-1", b"grant_type=x", 400),
        ("text/plain", b"grant_type=client_credentials", 400),
        ("application/json", b"[1, 2]", 400),
        ("application/json", b'{"grant_type": ["client_credentials"]}', 400),
        ("application/json", b'{"grant_type": 1}', 400),
        ("application/json", b"{not json", 400),
        ("application/json", b'"\xc3\x28"', 400),
        ("application/json", b"{" + b'"a": "b", ' * 3000 + b"}", 413),
    ],
)
def test_malformed_bodies_get_4xx_never_500(
    auth: Auth, content_type: str, body: bytes, status: int
) -> None:
    client_id, secret = auth.device()
    response = auth.http.post(
        "/oauth/token",
        content=body,
        headers={"Content-Type": content_type, "Authorization": basic(client_id, secret)},
    )
    assert_error(response, status, "invalid_request")


def test_missing_content_type_and_bad_authorization_are_invalid_request(auth: Auth) -> None:
    response = auth.http.post("/oauth/token", content=b"grant_type=client_credentials")
    assert_error(response, 400, "invalid_request")
    response = auth.http.post("/oauth/token", data=GRANT, headers={"Authorization": "Basic %%%%"})
    assert_error(response, 400, "invalid_request")
    bad_utf8 = "Basic " + base64.b64encode(b"\xff\xfe:x").decode()
    response = auth.http.post("/oauth/token", data=GRANT, headers={"Authorization": bad_utf8})
    assert_error(response, 400, "invalid_request")


def test_audiences_and_scopes(auth: Auth) -> None:
    device_id, device_secret = auth.device()
    op_id, op_secret = auth.operator()
    # A device may only write counts on the ingestion API.
    for audience in (ADMIN_AUDIENCE, "https://elsewhere.example"):
        response = auth.token_response(device_id, device_secret, audience=audience)
        assert_error(response, 400, "invalid_target")
    response = auth.token_response(device_id, device_secret, scope=COUNTS_READ)
    assert_error(response, 400, "invalid_scope")
    response = auth.token_response(device_id, device_secret, scope=f"{COUNTS_WRITE} bogus")
    assert_error(response, 400, "invalid_scope")
    # An operator has two audiences, so it must name one (RFC 8707: missing -> invalid_target).
    assert_error(auth.token_response(op_id, op_secret), 400, "invalid_target")
    admin = auth.token_response(op_id, op_secret, audience=ADMIN_AUDIENCE)
    assert admin.json()["scope"] == DEVICES_ADMIN
    assert jwt_parts(admin.json()["access_token"])[1]["aud"] == ADMIN_AUDIENCE
    assert "lot" not in jwt_parts(admin.json()["access_token"])[1]
    read = auth.token_response(op_id, op_secret, audience=INGEST_AUDIENCE, scope=COUNTS_READ)
    assert read.json()["scope"] == COUNTS_READ
    response = auth.token_response(op_id, op_secret, audience=INGEST_AUDIENCE, scope=COUNTS_WRITE)
    assert_error(response, 400, "invalid_scope")


def test_secret_rotation_grace(auth_any_db: Auth) -> None:
    auth = auth_any_db
    client_id, old = auth.device()
    with auth.ctx.sessions() as session:
        _client, new = registry.rotate_secret(session, auth.ctx.hasher, "t", client_id, 3600)
    assert auth.token_response(client_id, new).status_code == 200
    assert auth.token_response(client_id, old).status_code == 200  # still in its grace period
    with auth.ctx.sessions() as session:
        _client, newer = registry.rotate_secret(
            session, auth.ctx.hasher, "t", client_id, 60, now=time.time() - 120
        )
    assert_error(auth.token_response(client_id, new), 401, "invalid_client")  # grace over
    assert_error(auth.token_response(client_id, old), 401, "invalid_client")
    assert auth.token_response(client_id, newer).status_code == 200


def test_rate_limit_per_client_with_retry_after(make_auth: MakeAuth) -> None:
    auth = make_auth(token_rate_burst=3, token_rate_per_hour=10)
    client_id, secret = auth.device()
    other_id, other_secret = auth.device()
    for _ in range(3):
        assert auth.token_response(client_id, secret).status_code == 200
    response = auth.token_response(client_id, secret)
    assert_error(response, 429, "too_many_requests")
    # One token per 360 s at 10/hour; Retry-After is whole seconds, rounded up.
    assert 350 <= int(response.headers["retry-after"]) <= 360
    assert auth.token_response(other_id, other_secret).status_code == 200  # per client


def _from(auth: Auth, address: str) -> TestClient:
    """A client of the same running app whose requests come from `address` (on the app's one
    event loop, as in the service, so the audit window's timer runs)."""
    http = TestClient(auth.app, client=(address, 40000))
    http.portal = auth.http.portal
    return http


def test_wrong_secrets_never_lock_the_owner_out(make_auth: MakeAuth) -> None:
    # Client IDs are public, so failures must not spend the owner's quota.
    auth = make_auth(
        token_rate_burst=3,
        auth_fail_source_burst=5,
        auth_fail_client_burst=8,
        auth_fail_audit_window_s=1.0,
    )
    client_id, secret = auth.device()
    started = time.monotonic()
    attacker = _from(auth, "198.51.100.7")
    answers = [
        attacker.post("/oauth/token", data=GRANT, auth=(client_id, "x" * 43)) for _ in range(20)
    ]
    assert [r.status_code for r in answers] == [401] * 5 + [429] * 15  # per source
    assert_error(answers[-1], 429, "too_many_requests")
    assert "failed authentications" in answers[-1].json()["error_description"]
    # The owner, elsewhere, is served with the right secret: the issuance burst is intact.
    owner = _from(auth, "192.0.2.10")
    for _ in range(2):
        assert owner.post("/oauth/token", data=GRANT, auth=(client_id, secret)).status_code == 200
    # Guessing from many addresses: the client ID's failure limit answers 429 to wrong secrets
    # once spent (3 left of 8), and still serves the right one.
    spread = [
        _from(auth, f"203.0.113.{n}").post("/oauth/token", data=GRANT, auth=(client_id, "y"))
        for n in range(12)
    ]
    assert [r.status_code for r in spread] == [401] * 3 + [429] * 9
    assert (
        _from(auth, "203.0.113.99")
        .post("/oauth/token", data=GRANT, auth=(client_id, secret))
        .status_code
        == 200
    )
    # Unknown client IDs count together.
    for n in range(3):
        _from(auth, "192.0.2.77").post("/oauth/token", data=GRANT, auth=(f"dev_nobody{n}", "z"))
    # Audited in aggregate: one row per client ID per window, with the count, never a secret.
    elapsed = time.monotonic() - started
    time.sleep(1.5)
    with auth.ctx.sessions() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.fail")).all()
    windows = int(elapsed / 1.0) + 2  # the failures above span at most this many windows
    mine = [row.detail for row in rows if row.target == client_id and row.detail]
    unknown = [row.detail for row in rows if row.target is None and row.detail]
    assert 1 <= len(mine) <= windows and 1 <= len(unknown) <= windows
    assert len(rows) == len(mine) + len(unknown)
    assert sum(d["count"] for d in mine) == 5 + 12  # every failure counted, none twice
    assert sum(d["count"] for d in unknown) == 3 and unknown[0]["unknown_client_id"] is True
    assert "198.51.100.7" in mine[0]["sources"]
    assert all(len(d["sources"]) <= 5 for d in mine)
    assert secret not in str(mine)


def test_refused_token_requests_do_not_spend_the_issuance_quota(make_auth: MakeAuth) -> None:
    auth = make_auth(token_rate_burst=2)
    client_id, secret = auth.device()
    for _ in range(5):  # authenticated, but refused: no token, no quota spent
        assert_error(auth.token_response(client_id, secret, scope="bogus"), 400, "invalid_scope")
    assert auth.token_response(client_id, secret).status_code == 200
    assert auth.token_response(client_id, secret).status_code == 200
    assert_error(auth.token_response(client_id, secret), 429, "too_many_requests")


def test_issuance_is_audited_without_the_token(auth_any_db: Auth) -> None:
    auth = auth_any_db  # on PostgreSQL the audit rows travel as one JSON document (store/sql.py)
    client_id, secret = auth.device()
    token = auth.token(client_id, secret)
    with auth.ctx.sessions() as session:  # committed before the token was answered
        query = select(AuditEvent).where(AuditEvent.action == "token.issue")
        events = session.scalars(query).all()
    assert len(events) == 1
    event = events[0]
    assert event.actor == event.target == client_id
    assert event.detail is not None
    assert event.detail["aud"] == INGEST_AUDIENCE
    assert event.detail["jti"] == jwt_parts(token)[1]["jti"]
    assert token not in str(event.detail) and secret not in str(event.detail)


def test_metadata_document(auth: Auth) -> None:
    meta = auth.http.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == ISSUER + "/oauth/token"
    assert meta["jwks_uri"] == ISSUER + "/.well-known/jwks.json"
    assert meta["introspection_endpoint"] == ISSUER + "/oauth/introspect"
    assert meta["grant_types_supported"] == ["client_credentials"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
    }
    assert set(meta["scopes_supported"]) == {
        COUNTS_WRITE,
        COUNTS_READ,
        DEVICES_ADMIN,
        RELEASES_READ,
    }


def test_metrics_count_issued_and_refused_tokens(make_auth: MakeAuth) -> None:
    auth = make_auth(metrics_public=True)
    client_id, secret = auth.device()
    auth.token(client_id, secret)
    auth.token_response(client_id, "wrong")
    text = auth.http.get("/metrics").text
    assert f'parkfleet_tokens_issued_total{{audience="{INGEST_AUDIENCE}"}} 1.0' in text
    assert 'parkfleet_tokens_refused_total{reason="invalid_client"} 1.0' in text
    assert (
        'parkfleet_http_request_duration_seconds_count{method="POST",route="/oauth/token"}' in text
    )


def test_token_endpoint_survives_a_postgresql_restart_of_its_connections(
    make_auth: MakeAuth, pg_url: str
) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    auth = make_auth(db=pg_url)
    client_id, secret = auth.device()
    assert auth.token_response(client_id, secret).status_code == 200
    # Kill every server process of this database, as a PostgreSQL restart would.
    admin = create_engine(make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :db AND pid <> pg_backend_pid()"
            ),
            {"db": make_url(pg_url).database},
        )
    admin.dispose()
    assert auth.token_response(client_id, secret).status_code == 200


@pytest.mark.parametrize(
    "text",
    ["a=1&b=2", "a=&b", "", "&", "a=1&&b=2", "=x", "a=b=c", "a", "é=ü", "a%20b=c+d", "a=%zz"],
)
def test_form_fast_path_splits_like_parse_qsl(text: str) -> None:
    try:
        expected: object = parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), errors="strict"
        )
    except ValueError:
        expected = InvalidRequest
    try:
        got: object = _form_pairs(text)
    except InvalidRequest:
        got = InvalidRequest
    assert got == expected


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect"])
def test_non_ascii_basic_credentials_are_invalid_client_never_500(
    service: ServiceProcess, path: str
) -> None:
    """Raw bytes outside base64's alphabet in `Authorization: Basic`, against the real process
    (its HTTP parser hands them on as Latin-1): RFC 6749 §5.2 `invalid_client`, 401."""
    with service.client() as http:
        for raw in (b"Basic \xff\xfe:", b"Basic \xed\xa0\x80", b"basic Zm9v\xc3\xa9"):
            response = http.post(path, data={**GRANT, "token": "x"}, headers={"Authorization": raw})
            assert_error(response, 401, "invalid_client")
            assert response.headers["www-authenticate"] == 'Basic realm="parkfleet"'


def test_secrets_compare_as_bytes_whatever_their_content() -> None:
    from provisioning.service.auth.secrets import same_text

    assert same_text("abc", "abc") and not same_text("abc", "abd")
    assert same_text("é\ud800", "é\ud800")
    assert not same_text("é", "e") and not same_text("\xff", "abc")
