"""The ingestion API over HTTP (in-process): tokens, counts, bad bodies, lots and readings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from provisioning.common.scopes import (
    ADMIN_AUDIENCE,
    COUNTS_READ,
    DEVICES_ADMIN,
    INGEST_AUDIENCE,
)
from provisioning.service.app import create_app
from provisioning.service.registry import service as registry
from provisioning.service.ui import views
from provisioning.store.models import AuditEvent, DeviceState, Reading
from tests.service.auth.conftest import Auth, make_settings

COUNTS = "/v1/counts"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Auth]:
    with TestClient(create_app(make_settings(tmp_path / "data"))) as http:
        yield Auth(http)


@pytest.fixture
def api_any_db(tmp_path: Path, db_url: str) -> Iterator[Auth]:
    with TestClient(create_app(make_settings(tmp_path / "data", db_url))) as http:
        yield Auth(http)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def device_token(api: Auth, lot: str = "lot-1") -> tuple[str, str]:
    client_id, secret = api.device(lot=lot)
    return client_id, api.token(client_id, secret)


def reader_token(api: Auth) -> str:
    client_id, secret = api.operator()
    return api.token(client_id, secret, audience=INGEST_AUDIENCE, scope=COUNTS_READ)


def post(api: Auth, token: str, body: Any) -> Any:
    return api.http.post(COUNTS, json=body, headers=bearer(token))


def readings(*pairs: tuple[int, int]) -> list[dict[str, Any]]:
    return [{"seq": seq, "cars": cars, "ts": 1_800_000_000.0 + seq} for seq, cars in pairs]


def table_counts(api: Auth) -> tuple[int, int]:
    with api.ctx.engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(Reading)).scalar_one(),
            conn.execute(select(func.count()).select_from(DeviceState)).scalar_one(),
        )


def test_counts_are_stored_once_and_read_back(api_any_db: Auth) -> None:
    api = api_any_db
    dev, token = device_token(api, "north")
    body = {"readings": readings((1, 4), (2, 5), (2, 5)), "device_id": dev}
    first = post(api, token, body)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 2, "duplicates": 1}
    assert post(api, token, body).json() == {"accepted": 0, "duplicates": 3}  # a retry
    read = bearer(reader_token(api))
    lot = api.http.get("/v1/lots/north", headers=read).json()
    assert lot["lot"] == "north" and lot["cars"] == 5
    (entry,) = lot["devices"]
    assert entry["device_id"] == dev and entry["seq"] == 2 and entry["ts"] == 1_800_000_002.0
    assert abs(entry["received_at"] - time.time()) < 60
    made_of: dict[str, object] = {"baseline": 0, "since": None, "flows": [], "counted": 5}
    assert api.http.get("/v1/lots", headers=read).json() == {
        "lots": [
            {"lot": "north", "cars": 5, "devices": 1, "drift": False, "over_capacity": False}
            | made_of
        ],
        "next_cursor": None,
    }
    page = api.http.get(f"/v1/devices/{dev}/readings", headers=read).json()
    assert [r["seq"] for r in page["readings"]] == [1, 2] and page["next_since_seq"] is None


def test_lots_exist_from_registration_and_sum_latest_readings(api: Auth) -> None:
    a1, t1 = device_token(api, "south")
    _a2, _t2 = device_token(api, "south")
    read = bearer(reader_token(api))
    assert api.http.get("/v1/lots/south", headers=read).json()["cars"] == 0
    assert api.http.get("/v1/lots/nowhere", headers=read).status_code == 404
    post(api, t1, {"readings": readings((5, 9), (4, 1))})
    post(api, t1, {"readings": readings((3, 2))})  # older than seq 5: not the latest
    lot = api.http.get("/v1/lots/south", headers=read).json()
    assert lot["cars"] == 9
    assert {d["device_id"]: d["cars"] for d in lot["devices"]}[a1] == 9


def test_readings_are_paginated_in_seq_order(api: Auth) -> None:
    dev, token = device_token(api)
    post(api, token, {"readings": readings(*((s, s) for s in range(30, 0, -1)))})
    read = bearer(reader_token(api))
    seqs: list[int] = []
    url = f"/v1/devices/{dev}/readings?limit=7"
    since = None
    while True:
        query = url if since is None else f"{url}&since_seq={since}"
        page = api.http.get(query, headers=read).json()
        seqs += [r["seq"] for r in page["readings"]]
        since = page["next_since_seq"]
        if since is None:
            break
    assert seqs == list(range(1, 31))
    assert api.http.get(f"{url}&since_seq=x", headers=read).status_code == 422
    assert api.http.get(f"/v1/devices/{dev}/readings?limit=0", headers=read).status_code == 422
    assert api.http.get("/v1/devices/dev_nobody/readings", headers=read).status_code == 404


def test_health_is_kept_as_the_devices_latest(api: Auth) -> None:
    dev, token = device_token(api)
    health = {
        "uptime_s": 120,
        "free_heap": 41000,
        "reset_cause": "power_on",
        "rssi": -61,
        "spool_depth": 0,
        "dropped": 2,
    }
    response = post(api, token, {"readings": [], "health": health})
    assert response.json() == {"accepted": 0, "duplicates": 0}
    post(api, token, {"readings": readings((7, 3))})  # a later post without health
    op, secret = api.operator()
    admin = api.token(op, secret, audience=ADMIN_AUDIENCE, scope=DEVICES_ADMIN)
    shown = api.http.get(f"/admin/devices/{dev}", headers=bearer(admin)).json()
    assert shown["health"] == health  # the latest health report stays until the next one
    assert shown["last_seen_at"] > shown["health_at"] > time.time() - 60
    assert shown["reading"]["seq"] == 7 and shown["reading"]["cars"] == 3


def test_a_device_cannot_write_for_another(api: Auth) -> None:
    _dev, token = device_token(api)
    other, _ = device_token(api)
    response = post(api, token, {"readings": readings((1, 1)), "device_id": other})
    assert response.status_code == 403
    assert response.json()["error"] == "access_denied"
    assert table_counts(api) == (0, 0)


def test_scopes_and_missing_tokens(api: Auth) -> None:
    _dev, token = device_token(api)
    reader = reader_token(api)
    missing = api.http.post(COUNTS, json={"readings": []})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer realm=")
    wrong_scope = post(api, reader, {"readings": readings((1, 1))})
    assert wrong_scope.status_code == 403
    assert 'error="insufficient_scope"' in wrong_scope.headers["www-authenticate"]
    assert api.http.get("/v1/lots", headers=bearer(token)).status_code == 403
    assert api.http.get("/v1/lots").status_code == 401
    assert table_counts(api) == (0, 0)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def forged_tokens(api: Auth, token: str) -> dict[str, str]:
    """Every way the issue names of presenting a token that must not work."""
    header, claims = (
        json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        for part in token.split(".")[:2]
    )
    signer = api.ctx.keys.signer()
    now = int(time.time())

    def signed(**changes: Any) -> str:
        return jwt.encode(
            {**claims, **changes},
            signer.private_key,
            algorithm="ES256",
            headers={"typ": "at+jwt", "kid": signer.kid},
        )

    public_pem = signer.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs256_head = _b64(json.dumps({**header, "alg": "HS256"}).encode())
    hs256_body = token.split(".")[1]
    mac = hmac.new(public_pem, f"{hs256_head}.{hs256_body}".encode(), hashlib.sha256).digest()
    tampered_claims = _b64(json.dumps({**claims, "scope": "counts:write counts:read"}).encode())
    head, _body, sig = token.split(".")
    stranger = ec.generate_private_key(ec.SECP256R1())
    return {
        "alg none": _forge({**header, "alg": "none"}, claims),
        "HS256 with the public key": f"{hs256_head}.{hs256_body}.{_b64(mac)}",
        "tampered payload": f"{head}.{tampered_claims}.{sig}",
        "expired": signed(iat=now - 7200, exp=now - 3600),
        "wrong audience": signed(aud=ADMIN_AUDIENCE),
        "wrong issuer": signed(iss="https://evil.example"),
        "unknown kid": jwt.encode(
            claims, stranger, algorithm="ES256", headers={"typ": "at+jwt", "kid": "not-a-key"}
        ),
        "known kid, foreign key": jwt.encode(
            claims, stranger, algorithm="ES256", headers={"typ": "at+jwt", "kid": signer.kid}
        ),
        "wrong typ": jwt.encode(
            claims, signer.private_key, algorithm="ES256", headers={"typ": "JWT", "kid": signer.kid}
        ),
        "garbage": "not.a.jwt",
    }


def test_forged_tokens_are_refused_and_store_nothing(api: Auth) -> None:
    _dev, token = device_token(api)
    assert post(api, token, {"readings": []}).status_code == 200  # the genuine one works
    for name, forged in forged_tokens(api, token).items():
        response = post(api, forged, {"readings": readings((1, 1))})
        assert response.status_code == 401, (name, response.text)
        assert 'error="invalid_token"' in response.headers["www-authenticate"], name
    assert table_counts(api)[0] == 0


def test_disabled_and_deleted_devices_stop_at_once(api: Auth) -> None:
    dev, token = device_token(api)
    assert post(api, token, {"readings": readings((1, 1))}).status_code == 200
    with api.ctx.sessions() as session:
        registry.disable(session, "test", dev)
    # The verifier may trust its status cache for up to 60 s; storing checks the registry.
    refused = post(api, token, {"readings": readings((2, 1))})
    assert refused.status_code == 401
    assert table_counts(api)[0] == 1


BAD_JSON = [b"", b"{", b"readings=1", b'{"readings": [{"seq": NaN, "cars": 1}]}', b"\xff"]


@pytest.mark.parametrize("raw", BAD_JSON)
def test_non_json_is_400_and_changes_nothing(api: Auth, raw: bytes) -> None:
    _dev, token = device_token(api)
    response = api.http.post(
        COUNTS, content=raw, headers={**bearer(token), "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert table_counts(api) == (0, 0)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"readings": readings((1, 1)), "extra": True}, "extra"),
        ({"readings": [{"seq": 1, "cars": True}]}, "readings.0.cars"),
        ({"readings": [{"seq": 1.5, "cars": 1}]}, "readings.0.seq"),
        ({"readings": [{"seq": -1, "cars": 1}]}, "readings.0.seq"),
        ({"readings": [*readings((1, 1)), {"seq": 2, "cars": 1, "x": 0}]}, "readings.1.x"),
        ({"readings": readings(*((s, 1) for s in range(501)))}, "readings"),
        ({"readings": readings((1, 1)), "health": {"free_heap": -5}}, "health.free_heap"),
        ({"readings": readings((1, 1)), "health": {"mood": "ok"}}, "health.mood"),
        ([], "body"),
    ],
)
def test_schema_errors_are_422_and_change_nothing(api: Auth, body: Any, where: str) -> None:
    _dev, token = device_token(api)
    response = post(api, token, body)
    assert response.status_code == 422, response.text
    assert response.json()["error_description"].startswith(f"{where}:")
    assert table_counts(api) == (0, 0)


def test_oversized_bodies_are_413_before_being_read(api: Auth) -> None:
    _dev, token = device_token(api)
    big = b'{"readings": [' + b" " * 70_000 + b"]}"
    headers = bearer(token) | {"Content-Type": "application/json"}
    declared = api.http.post(COUNTS, content=big, headers=headers)
    assert declared.status_code == 413

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to check up front
        for _ in range(10):
            yield b" " * 8192

    # (That the body is not read whole is pinned against the real server in test_service.py.)
    chunked = api.http.post(COUNTS, content=chunks(), headers=headers)
    assert chunked.status_code == 413
    assert table_counts(api) == (0, 0)


def test_counts_route_is_registered_once_and_documented_from_itself(api: Auth) -> None:
    """The route that serves POST /v1/counts is the one the OpenAPI document describes."""
    served = [r for r in api.app.router.routes if getattr(r, "path", None) == COUNTS]
    assert len(served) == 1
    operation = api.app.openapi()["paths"][COUNTS]["post"]  # /openapi.json is opt-in
    assert operation["summary"] == "Store a device's readings"
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert "readings" in body["properties"]
    assert {"200", "401", "403", "413", "422"} <= set(operation["responses"])


def test_counts_need_json_and_refuse_repeated_keys(api: Auth) -> None:
    # Content-Type is checked, and a repeated key is refused (not its last value taken).
    _device, token = device_token(api)
    body = b'{"readings": [{"seq": 1, "cars": 2}]}'
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None,
                         "application/json; charset=latin-1"):  # fmt: skip
        headers = bearer(token) | ({"Content-Type": content_type} if content_type else {})
        response = api.http.post(COUNTS, content=body, headers=headers)
        assert response.status_code == 415, (content_type, response.text)
        assert response.json()["error"] == "invalid_request"
    json_headers = bearer(token) | {"Content-Type": "application/json; charset=utf-8"}
    repeated = b'{"readings": [{"seq": 1, "cars": 2, "cars": 40}]}'
    response = api.http.post(COUNTS, content=repeated, headers=json_headers)
    assert response.status_code == 400 and "repeats a key" in response.text
    assert api.http.post(COUNTS, content=body, headers=json_headers).json()["accepted"] == 1


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_per_device_readings_rate_is_429_with_retry_after(
    tmp_path: Path, db: str, request: pytest.FixtureRequest
) -> None:
    """Each device's readings per minute are bounded: beyond its bucket a post is 429 with
    Retry-After and stores nothing; another device is not affected; the refusals are counted
    on the board for the dashboard; a repeated agent report writes one audit row, not one per
    post."""
    url = None if db == "sqlite" else request.getfixturevalue("pg_url")
    settings = make_settings(
        tmp_path / "data", url, ingest_readings_burst=3, ingest_readings_per_minute=30
    )
    with TestClient(create_app(settings)) as http:
        api = Auth(http)
        dev, token = device_token(api)
        _other, other = device_token(api)
        agent = {"version": "1.0.0", "update": "confirmed"}
        assert post(api, token, {"readings": readings((1, 1), (2, 2)), "agent": agent}).json()
        assert post(api, token, {"readings": readings((3, 3)), "agent": agent}).status_code == 200
        stored = table_counts(api)
        refused = post(api, token, {"readings": readings((4, 4))})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "too_many_requests"
        assert int(refused.headers["Retry-After"]) >= 1
        assert table_counts(api) == stored  # nothing stored
        assert post(api, other, {"readings": readings((1, 1))}).status_code == 200
        time.sleep(2.1)  # one reading every 2 s: room for one
        assert post(api, token, {"readings": readings((4, 4))}).status_code == 200
        with api.ctx.engine.connect() as conn:
            (board,) = views.boards(conn, 3600, client_id=dev)
            audit = conn.execute(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.target == dev, AuditEvent.action.startswith("agent."))
            ).scalar_one()
        assert board.refused == 1 and "1 posts refused (readings rate)" in board.problems
        assert audit == 1, "the agent's unchanged report is audited once"
