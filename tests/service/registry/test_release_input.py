"""The release and rollout admin API under the admin API's input rules, on both databases.

Strict JSON (no repeated key, NaN, overflowing number, deep nesting, lone surrogate or NUL),
strict numbers (`"5"` and `true` are no numbers), bounded path integers, versions and file paths
matched whole in ASCII digits, and a bundle upload refused at its limit while it is read. Each
refusal is a 4xx with the standard body and stores nothing.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import select
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from provisioning.common import bundle
from provisioning.common.scopes import ADMIN_AUDIENCE
from provisioning.service.app import create_app
from provisioning.service.releases.routes import MAX_BUNDLE_BYTES
from tests.service.auth.conftest import Auth, make_settings
from tests.service.registry.test_bad_input import SURROGATE_JSON, assert_standard_4xx
from tools.harness.server import ServiceProcess

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def key(tmp_path: Path) -> Path:
    private = tmp_path / "release.key"
    bundle.keygen(private)
    return private


@pytest.fixture
def admin_api(tmp_path: Path, db_url: str, key: Path) -> Iterator[tuple[Auth, dict[str, str]]]:
    settings = make_settings(tmp_path / "data", db_url, release_keys=f"{key}.pub")
    with TestClient(create_app(settings)) as http:
        api = Auth(http)
        op_id, op_secret = api.operator()
        token = api.token(op_id, op_secret, audience=ADMIN_AUDIENCE)
        yield api, {"Authorization": f"Bearer {token}"}


def signed_bundle(key: Path, version: str, path: str = "x.mpy") -> dict[str, Any]:
    """A minimal signed upload: one app module and one boot file."""
    data, boot = b"M\x06\x00\x1f", b"import appdir\n"

    def entry(name: str, content: bytes) -> dict[str, Any]:
        return {"path": name, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}

    manifest = {
        "boot": [entry("main.py", boot)],
        "files": [entry(path, data)],
        "firmware": None,
        "format": bundle.FORMAT,
        "mpy": 6,
        "rollback": False,
        "version": version,
    }
    raw = bundle.encode_manifest(manifest)
    signature = bundle.sign(bundle.load_private(key), raw)

    def b64(value: bytes) -> str:
        return base64.b64encode(value).decode()

    return {
        "manifest": b64(raw),
        "signature": b64(signature),
        "files": {f"app/{path}": b64(data), "boot/main.py": b64(boot)},
    }


def test_versions_and_paths_are_matched_whole_in_ascii_digits(
    admin_api: tuple[Auth, dict[str, str]], key: Path
) -> None:
    api, admin = admin_api
    for version, path in (("1.0.2\n", "x.mpy"), ("1\u0660.0.0", "x.mpy"), ("1.0.0", "x.mpy\n")):
        response = api.http.post(
            "/admin/releases", json=signed_bundle(key, version, path), headers=admin
        )
        assert response.status_code == 422, (version, path, response.text)
        assert_standard_4xx(response)
    assert api.http.get("/admin/releases", headers=admin).json()["items"] == []
    good = api.http.post("/admin/releases", json=signed_bundle(key, "1.0.0"), headers=admin)
    assert good.status_code == 201, good.text


def test_rollout_and_lot_bodies_follow_the_admin_input_rules(
    admin_api: tuple[Auth, dict[str, str]], key: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api, admin = admin_api
    assert api.http.post("/admin/releases", json=signed_bundle(key, "1.0.0"), headers=admin)
    api.device(lot="north")
    caplog.set_level(logging.INFO)
    good = '{"version": "1.0.0", "lot": "north"'
    for raw, status in (
        (b'{"version": "1.0.0", "lot": "north", "canary": ' + b"[" * 5000 + b"]" * 5000, 400),
        (b'{"a":' * 3000 + b"1" + b"}" * 3000, 400),
        (('{"version": "1.0.0", "lot": ' + SURROGATE_JSON + "}").encode(), 422),
        (b'{"version": "1.0.0", "devices": ["no\\u0000rth"]}', 422),
        ((good + ', "lot": "north"}').encode(), 400),  # a repeated key
        ((good + ', "silence_s": NaN}').encode(), 400),
        ((good + ', "canary_wait_s": 1e999}').encode(), 400),
        ((good + ', "canary_wait_s": "5"}').encode(), 422),
        ((good + ', "canary": true}').encode(), 422),
        ((good + ', "canary": 9223372036854775808}').encode(), 400),
        ((good + ', "silence_s": -1}').encode(), 422),
        (b'{"version": "1.0.2\\n", "lot": "north"}', 422),
    ):
        response = api.http.post("/admin/rollouts", content=raw, headers={**admin, **JSON})
        assert response.status_code == status, (raw[:80], response.text)
        assert_standard_4xx(response)
    assert api.http.get("/admin/rollouts", headers=admin).json()["items"] == []
    for rollout_id in ("9223372036854775808", "0", "-1", "1e3"):
        response = api.http.get(f"/admin/rollouts/{rollout_id}", headers=admin)
        assert response.status_code == 422, (rollout_id, response.text)
    # Lots: a repeated key, and numbers that are text or booleans.
    for path, raw in (
        ("/admin/lots", b'{"name": "north", "name": "south"}'),
        ("/admin/lots/north/recount", b'{"cars": 5, "cars": 6}'),
        ("/admin/lots/north/recount", b'{"cars": "5"}'),
        ("/admin/lots/north/recount", b'{"cars": true}'),
    ):
        response = api.http.post(path, content=raw, headers={**admin, **JSON})
        assert response.status_code in (400, 422), (path, raw, response.text)
        assert_standard_4xx(response)
    assert api.http.get("/admin/lots", headers=admin).json()["items"] == []
    started = api.http.post(
        "/admin/rollouts", content=(good + "}").encode(), headers={**admin, **JSON}
    )
    assert started.status_code == 201, started.text
    page = api.http.get("/admin/rollouts", params={"limit": 1}, headers=admin).json()
    assert [r["id"] for r in page["items"]] == [started.json()["id"]]
    assert page["next_cursor"] == started.json()["id"]
    rest = api.http.get(
        "/admin/rollouts", params={"limit": 1, "cursor": page["next_cursor"]}, headers=admin
    )
    assert rest.json() == {"items": [], "next_cursor": None}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_oversized_chunked_upload_is_refused_while_it_is_read(tmp_path: Path) -> None:
    """A chunked upload (no Content-Length) is cut at MAX_BUNDLE_BYTES: the service answers
    413 long before a 300 MB body is sent, instead of growing by it."""
    data = tmp_path / "data"
    with ServiceProcess(data) as server:
        with server.client() as http:
            op = http.post(
                "/oauth/token",
                data={"grant_type": "client_credentials", "audience": ADMIN_AUDIENCE},
                auth=_operator(data),
            )
            token = op.json()["access_token"]
        chunk = b"x" * (1024 * 1024)
        head = (
            "POST /admin/releases HTTP/1.1\r\nHost: localhost\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        sent = 0
        answer = b""
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(head)
            while sent < 300 * len(chunk):
                if select.select([sock], [], [], 0)[0]:
                    break  # the service answered (or closed) before the body ended
                try:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except OSError:
                    break
                sent += len(chunk)
            while b"\r\n\r\n" not in answer:
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert sent <= MAX_BUNDLE_BYTES + 8 * len(chunk), sent


def _operator(data: Path) -> tuple[str, str]:
    from provisioning.service.auth.secrets import SecretHasher
    from provisioning.service.registry import service as registry
    from provisioning.store.db import make_engine, migrate, session_factory

    url = f"sqlite:///{data / 'parkfleet.db'}"
    migrate(url)
    engine = make_engine(url)
    try:
        with session_factory(engine).begin() as session:
            client, secret = registry.create_operator(
                session, SecretHasher.from_data_dir(data), "test", "ops"
            )
            return client.client_id, secret
    finally:
        engine.dispose()
