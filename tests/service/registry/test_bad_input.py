"""Inputs that must never answer 500 with a traceback, on both databases.

Each must be a 4xx with the standard `{"error", "error_description"}` body, change nothing, and
log no error (the in-process client re-raises any server exception, so a 500 fails loudly).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from provisioning.common.scopes import ADMIN_AUDIENCE, COUNTS_READ, INGEST_AUDIENCE
from provisioning.service.app import create_app
from tests.service.auth.conftest import Auth, make_settings

SURROGATE_JSON = '"\\ud800"'  # a lone surrogate, written as JSON does


@pytest.fixture
def app_any_db(tmp_path: Path, db_url: str) -> Iterator[Auth]:
    with TestClient(create_app(make_settings(tmp_path / "data", db_url))) as http:
        yield Auth(http)


def assert_standard_4xx(response: Any) -> None:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body["error"], str) and isinstance(body["error_description"], str)


def _json_body(client_id: str, secret: str) -> bytes:
    return (
        f'{{"grant_type": "client_credentials", "client_id": {client_id}, '
        f'"client_secret": {secret}, "token": "x"}}'
    ).encode()


def test_unauthenticated_bad_inputs_are_4xx(
    app_any_db: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    api = app_any_db
    client_id, secret = api.device()
    json_type = {"Content-Type": "application/json"}
    caplog.set_level(logging.INFO)
    for path in ("/oauth/token", "/oauth/introspect"):
        for body in (
            _json_body(SURROGATE_JSON, f'"{secret}"'),
            _json_body(f'"{client_id}"', SURROGATE_JSON),
            _json_body('"dev_a\\u0000b"', f'"{secret}"'),
        ):
            assert_standard_4xx(api.http.post(path, content=body, headers=json_type))
        # NUL in a client ID in a form body and in HTTP Basic.
        form = {"grant_type": "client_credentials", "client_id": "a\x00b", "client_secret": "s"}
        assert_standard_4xx(api.http.post(path, data=form))
        basic = "Basic " + base64.b64encode(b"a%00b:secret").decode()
        response = api.http.post(
            path, data={"grant_type": "client_credentials"}, headers={"Authorization": basic}
        )
        assert_standard_4xx(response)
        # 10 KB of nesting.
        deep = b"[" * 10_000
        assert_standard_4xx(api.http.post(path, content=deep, headers=json_type))
        deep_object = b'{"a":' * 3000 + b"1" + b"}" * 3000
        assert_standard_4xx(api.http.post(path, content=deep_object, headers=json_type))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_authenticated_bad_inputs_are_4xx(
    app_any_db: Auth, caplog: pytest.LogCaptureFixture
) -> None:
    api = app_any_db
    op_id, op_secret = api.operator()
    admin = {"Authorization": "Bearer " + api.token(op_id, op_secret, audience=ADMIN_AUDIENCE)}
    reader = api.token(op_id, op_secret, audience=INGEST_AUDIENCE, scope=COUNTS_READ)
    read = {"Authorization": "Bearer " + reader}
    caplog.set_level(logging.INFO)
    body = ('{"lot": "north", "name": ' + SURROGATE_JSON + "}").encode()
    response = api.http.post(
        "/admin/devices", content=body, headers={**admin, "Content-Type": "application/json"}
    )
    assert_standard_4xx(response)
    assert api.http.get("/admin/devices", headers=admin).json()["items"] == []  # nothing stored
    for cursor in ("9" * 30, str(2**63), "²", "-1"):
        response = api.http.get("/admin/audit", params={"cursor": cursor}, headers=admin)
        assert_standard_4xx(response)
    for path, headers in (
        ("/admin/devices/a%00b", admin),
        ("/admin/devices/a%00b/disable", admin),
        ("/v1/lots/a%00b", read),
        ("/v1/devices/a%00b/readings", read),
        ("/admin/audit?target=a%00b", admin),
        ("/v1/lots?x=%00", read),
    ):
        method = "POST" if path.endswith("/disable") else "GET"
        assert_standard_4xx(api.http.request(method, path, headers=headers))
    # Framework refusals use the same body: unknown route, wrong method, wrong query type.
    assert_standard_4xx(api.http.get("/no/such/route"))
    assert_standard_4xx(api.http.delete("/v1/lots", headers=read))
    response = api.http.get("/v1/devices/x/readings?since_seq=abc", headers=read)
    assert_standard_4xx(response)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
