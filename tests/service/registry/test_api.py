"""The admin API end to end in-process, authenticated through the real token endpoint."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from provisioning.common.scopes import ADMIN_AUDIENCE
from provisioning.service.app import create_app
from provisioning.service.auth.clients import ClientRecord
from provisioning.service.auth.errors import InvalidToken
from provisioning.service.auth.ratelimit import TokenBuckets
from provisioning.service.auth.tokens import ClientCredentialsGrant
from provisioning.store.models import AuditEvent, DeviceState
from tests.service.auth.conftest import Auth, make_settings
from tests.service.registry.conftest import AdminApp


def test_without_a_token_401_with_a_device_token_401_without_the_scope_403(
    admin_app: AdminApp,
) -> None:
    http = admin_app.http
    response = http.get("/admin/devices")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="parkfleet"')
    response = http.get("/admin/devices", headers={"Authorization": "Bearer not-a-jwt"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"

    created = http.post(
        "/admin/devices", json={"lot": "l1", "name": "a"}, headers=admin_app.headers()
    )
    device = created.json()
    device_token = admin_app.token(device["client_id"], device["client_secret"])
    op = admin_app.operator
    read_token = admin_app.token(op.client_id, op.client_secret, "parkfleet-ingest")
    # Tokens for parkfleet-ingest (a device's, or an operator's counts:read) are for another
    # resource server: RFC 9068 §4 says reject them, RFC 6750 §3.1 says as invalid_token.
    for token in (device_token, read_token):
        for method, path in (("GET", "/admin/devices"), ("POST", "/admin/devices")):
            response = http.request(
                method,
                path,
                json={"lot": "l", "name": "x"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 401, response.text
            assert response.json()["error"] == "invalid_token"
    # The right audience without devices:admin is RFC 6750's insufficient_scope (403). The
    # token endpoint never grants that, so sign one with the server's own key.
    ctx = http.app.state.ctx  # type: ignore[attr-defined]
    grant = ClientCredentialsGrant(ctx.keys, ctx.settings.issuer_url, 300, TokenBuckets(1, 1))
    record = ClientRecord(op.client_id, "operator", None, True)
    body = grant.sign(grant.claims(record, "parkfleet-admin", []))
    response = http.get(
        "/admin/devices", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'scope="devices:admin"' in response.headers["WWW-Authenticate"]


def test_register_show_list_update(admin_app: AdminApp) -> None:
    http, headers = admin_app.http, admin_app.headers()
    response = admin_app.register(headers, lot="north", name="Gate 1", mac="AA:BB:CC:00:00:01")
    assert response.status_code == 201, response.text
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    client_id = body["client_id"]
    assert response.headers["Location"] == f"/admin/devices/{client_id}"
    assert len(body["client_secret"]) >= 43
    assert (body["lot"], body["name"], body["mac"], body["enabled"]) == (
        "north",
        "Gate 1",
        "aa:bb:cc:00:00:01",
        True,
    )

    shown = http.get(f"/admin/devices/{client_id}", headers=headers)
    assert shown.status_code == 200
    assert "client_secret" not in shown.json()
    assert shown.json()["reading"] is None and shown.json()["last_seen_at"] is None

    listed = http.get("/admin/devices", params={"lot": "north"}, headers=headers).json()
    assert [d["client_id"] for d in listed["items"]] == [client_id]
    assert listed["next_cursor"] is None
    by_mac = http.get("/admin/devices", params={"mac": "aabbcc000001"}, headers=headers).json()
    assert [d["client_id"] for d in by_mac["items"]] == [client_id]

    patched = http.patch(
        f"/admin/devices/{client_id}", json={"lot": "south", "name": "Gate 2"}, headers=headers
    )
    assert patched.status_code == 200
    assert (patched.json()["lot"], patched.json()["name"]) == ("south", "Gate 2")


def test_show_includes_latest_reading_and_health(admin_app: AdminApp) -> None:
    http, headers = admin_app.http, admin_app.headers()
    client_id = admin_app.register(headers, lot="l", name="a").json()["client_id"]
    ctx = http.app.state.ctx  # type: ignore[attr-defined]
    now = time.time()
    with ctx.sessions.begin() as session:
        session.add(
            DeviceState(
                device_id=client_id,
                last_seq=9,
                cars=17,
                ts=now - 2,
                received_at=now - 1,
                last_seen_at=now,
                health={"rssi": -61, "heap": 81234},
                health_at=now,
            )
        )
    body = http.get(f"/admin/devices/{client_id}", headers=headers).json()
    assert body["reading"] == {"seq": 9, "cars": 17, "ts": now - 2, "received_at": now - 1}
    assert body["last_seen_at"] == now
    assert body["health"] == {"rssi": -61, "heap": 81234} and body["health_at"] == now


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"lot": "a/b", "name": "x"}, "lot: lot may contain only"),
        ({"lot": "a", "name": "x", "mac": "zz"}, "mac: mac must be six hex octets"),
        ({"lot": "a"}, "name: Field required"),
        ({"lot": "a", "name": "x", "colour": "red"}, "colour: Extra inputs"),
        ({"lot": "a#", "name": "\x01"}, "; name: name may not contain control"),
    ],
)
def test_bad_bodies_get_422_in_the_error_format(
    admin_app: AdminApp, body: dict[str, str], needle: str
) -> None:
    response = admin_app.http.post("/admin/devices", json=body, headers=admin_app.headers())
    assert response.status_code == 422
    error = response.json()
    assert error["error"] == "invalid_request"
    assert needle in error["error_description"]


def test_bad_query_and_unknown_ids(admin_app: AdminApp) -> None:
    http, headers = admin_app.http, admin_app.headers()
    for params in ({"limit": 0}, {"limit": 501}, {"cursor": "garbage"}, {"lot": "a b"}):
        response = http.get("/admin/devices", params=params, headers=headers)
        assert response.status_code == 422, params
        assert response.json()["error"] == "invalid_request"
    for method, path in (
        ("GET", "/admin/devices/dev_missing"),
        ("PATCH", "/admin/devices/dev_missing"),
        ("POST", "/admin/devices/dev_missing/disable"),
        ("POST", "/admin/devices/dev_missing/enable"),
        ("POST", "/admin/devices/dev_missing/rotate-secret"),
        ("DELETE", "/admin/devices/dev_missing"),
        ("GET", f"/admin/devices/{admin_app.operator.client_id}"),  # operators are not devices
    ):
        body = {"name": "x"} if method == "PATCH" else None
        response = http.request(method, path, json=body, headers=headers)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"] == "not_found"


def test_mac_conflict_names_the_existing_device(admin_app: AdminApp) -> None:
    headers = admin_app.headers()
    first = admin_app.register(headers, lot="l", name="a", mac="02:00:00:00:00:01").json()
    response = admin_app.register(headers, lot="l", name="b", mac="02-00-00-00-00-01")
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert response.json()["client_id"] == first["client_id"]
    assert "client_secret" not in response.text


def test_disable_enable_rotate_delete_against_the_token_endpoint(admin_app: AdminApp) -> None:
    http, headers = admin_app.http, admin_app.headers()
    device = admin_app.register(headers, lot="l", name="a").json()
    client_id, old = device["client_id"], device["client_secret"]
    grant = {"grant_type": "client_credentials"}

    assert (
        http.post(f"/admin/devices/{client_id}/disable", headers=headers).json()["enabled"] is False
    )
    refused = http.post("/oauth/token", data=grant, auth=(client_id, old))
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    assert (
        http.post(f"/admin/devices/{client_id}/enable", headers=headers).json()["enabled"] is True
    )
    admin_app.token(client_id, old)

    before = time.time()
    rotated = http.post(f"/admin/devices/{client_id}/rotate-secret", headers=headers)
    assert rotated.status_code == 200
    assert rotated.headers["Cache-Control"] == "no-store"
    new = rotated.json()["client_secret"]
    assert new != old
    until = rotated.json()["previous_secret_expires_at"]
    assert before + 3600 <= until <= time.time() + 3600  # settings.secret_grace_s
    admin_app.token(client_id, old)  # still inside the grace period
    admin_app.token(client_id, new)

    # grace_s 0: a leaked secret stops working at once.
    revoked = http.post(
        f"/admin/devices/{client_id}/rotate-secret", json={"grace_s": 0}, headers=headers
    ).json()
    assert revoked["previous_secret_expires_at"] is None
    assert http.post("/oauth/token", data=grant, auth=(client_id, new)).status_code == 401
    newest = revoked["client_secret"]
    admin_app.token(client_id, newest)

    assert http.delete(f"/admin/devices/{client_id}", headers=headers).status_code == 204
    assert http.post("/oauth/token", data=grant, auth=(client_id, newest)).status_code == 401
    assert http.get(f"/admin/devices/{client_id}", headers=headers).status_code == 404


def test_disable_revokes_tokens_already_issued(admin_app: AdminApp) -> None:
    http, headers = admin_app.http, admin_app.headers()
    device = admin_app.register(headers, lot="l", name="a").json()
    ctx = http.app.state.ctx  # type: ignore[attr-defined]
    token = admin_app.token(device["client_id"], device["client_secret"])
    principal = asyncio.run(ctx.verifier.verify(token, "parkfleet-ingest"))
    assert principal.client_id == device["client_id"]
    http.post(f"/admin/devices/{device['client_id']}/disable", headers=headers)
    with pytest.raises(InvalidToken):
        asyncio.run(ctx.verifier.verify(token, "parkfleet-ingest"))


def test_pagination_and_audit(admin_app: AdminApp) -> None:
    http, headers = admin_app.http, admin_app.headers()
    made = [
        http.post("/admin/devices", json={"lot": "p", "name": f"d{i}"}, headers=headers).json()
        for i in range(5)
    ]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = http.get("/admin/devices", params=params, headers=headers).json()
        seen += [d["client_id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [d["client_id"] for d in made]

    # Token issuance events are written in batches, so only admin actions are compared.
    events, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = http.get("/admin/audit", params=params, headers=headers).json()
        events += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    creates = [e for e in events if e["action"] == "device.create"]
    assert [e["target"] for e in creates] == [d["client_id"] for d in reversed(made)]
    assert {e["actor"] for e in creates} == {admin_app.operator.client_id}
    target = made[0]["client_id"]
    mine = http.get("/admin/audit", params={"target": target}, headers=headers).json()
    assert [e["action"] for e in mine["items"]] == ["device.create"]


def test_no_secret_reaches_the_database_or_audit_log(admin_app: AdminApp) -> None:
    http, headers = admin_app.http, admin_app.headers()
    device = admin_app.register(headers, lot="l", name="a").json()
    rotated = http.post(
        f"/admin/devices/{device['client_id']}/rotate-secret", headers=headers
    ).json()
    secrets = [device["client_secret"], rotated["client_secret"], admin_app.operator.client_secret]
    ctx = http.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as session:
        details = " ".join(str(e.detail) for e in session.scalars(select(AuditEvent)))
    ctx.engine.dispose()  # flush the WAL into the file
    data = b"".join(p.read_bytes() for p in admin_app.settings.data_dir.glob("parkfleet.db*"))
    for secret in secrets:
        assert secret.encode() not in data
        assert secret not in details


@pytest.fixture
def ops_any_db(tmp_path: Path, db_url: str) -> Iterator[Auth]:
    with TestClient(create_app(make_settings(tmp_path / "data", db_url))) as http:
        yield Auth(http)


def test_operators_can_be_disabled_rotated_and_deleted(ops_any_db: Auth) -> None:
    # A leaked operator secret must not be forever.
    api = ops_any_db
    a_id, a_secret = api.operator("alice")
    admin = {"Authorization": "Bearer " + api.token(a_id, a_secret, audience=ADMIN_AUDIENCE)}
    made = api.http.post("/admin/operators", json={"name": "bob"}, headers=admin)
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    b_id, b_secret = made.json()["client_id"], made.json()["client_secret"]
    listed = api.http.get("/admin/operators", headers=admin).json()["items"]
    assert [(o["client_id"], o["enabled"]) for o in listed] == [(a_id, True), (b_id, True)]
    bob = {"Authorization": "Bearer " + api.token(b_id, b_secret, audience=ADMIN_AUDIENCE)}
    assert api.http.get("/admin/devices", headers=bob).status_code == 200

    disabled = api.http.post(f"/admin/operators/{b_id}/disable", headers=admin)
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    assert api.http.get("/admin/devices", headers=bob).status_code == 401  # at once, here
    assert api.token_response(b_id, b_secret, audience=ADMIN_AUDIENCE).status_code == 401
    # Alice is now the last enabled operator: she can neither disable nor delete herself.
    for response in (
        api.http.post(f"/admin/operators/{a_id}/disable", headers=admin),
        api.http.delete(f"/admin/operators/{a_id}", headers=admin),
    ):
        assert response.status_code == 409, response.text
        assert response.json()["error"] == "conflict"
        assert "last enabled operator" in response.json()["error_description"]

    assert api.http.post(f"/admin/operators/{b_id}/enable", headers=admin).status_code == 200
    assert api.http.get("/admin/devices", headers=bob).status_code == 401  # still revoked
    bob = {"Authorization": "Bearer " + api.token(b_id, b_secret, audience=ADMIN_AUDIENCE)}
    assert api.http.get("/admin/devices", headers=bob).status_code == 200
    rotated = api.http.post(
        f"/admin/operators/{b_id}/rotate-secret", json={"grace_s": 0}, headers=admin
    )
    assert rotated.status_code == 200 and rotated.json()["previous_secret_expires_at"] is None
    assert api.http.get("/admin/devices", headers=bob).status_code == 401
    assert api.token_response(b_id, b_secret, audience=ADMIN_AUDIENCE).status_code == 401
    new_secret = rotated.json()["client_secret"]
    assert api.token_response(b_id, new_secret, audience=ADMIN_AUDIENCE).status_code == 200
    # With Bob enabled Alice may step down; then Bob is the last one.
    assert api.http.delete(f"/admin/operators/{b_id}", headers=admin).status_code == 204
    assert api.http.get(f"/admin/operators/{b_id}", headers=admin).status_code == 404
    assert api.token_response(b_id, new_secret, audience=ADMIN_AUDIENCE).status_code == 401
    # Devices and operators are apart: the device routes do not find an operator.
    assert api.http.post(f"/admin/devices/{a_id}/disable", headers=admin).status_code == 404
    actions = {e["action"] for e in api.http.get("/admin/audit", headers=admin).json()["items"]}
    assert {"operator.create", "operator.disable", "operator.enable"} <= actions
    assert {"operator.rotate_secret", "operator.delete"} <= actions
