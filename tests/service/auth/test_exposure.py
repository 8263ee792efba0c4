"""What the service shows to whom, and the smaller refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from provisioning.common.scopes import ADMIN_AUDIENCE, INGEST_AUDIENCE
from tests.service.auth.conftest import Auth, MakeAuth
from tools.harness.server import ServiceProcess


def test_metrics_need_an_operator_token_unless_opened(make_auth: MakeAuth) -> None:
    auth = make_auth()
    assert auth.http.get("/metrics").status_code == 401
    device_id, device_secret = auth.device()
    device = {"Authorization": "Bearer " + auth.token(device_id, device_secret)}
    assert auth.http.get("/metrics", headers=device).status_code == 401  # wrong audience
    op_id, op_secret = auth.operator()
    operator = {"Authorization": "Bearer " + auth.token(op_id, op_secret, audience=ADMIN_AUDIENCE)}
    response = auth.http.get("/metrics", headers=operator)
    assert response.status_code == 200 and "parkfleet_tokens_issued_total" in response.text
    assert make_auth(metrics_public=True).http.get("/metrics").status_code == 200


def test_api_docs_are_opt_in(make_auth: MakeAuth) -> None:
    closed = make_auth()
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert closed.http.get(path).status_code == 404
    document = make_auth(api_docs=True).http.get("/openapi.json").json()
    # The token and introspection endpoints are in the document (they were missing).
    assert {"/oauth/token", "/oauth/introspect", "/v1/counts"} <= set(document["paths"])
    grace = document["components"]["schemas"]["RotateSecret"]["properties"]["grace_s"]
    assert "integer" in str(grace)


def test_security_headers(auth: Auth) -> None:
    response = auth.http.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "strict-transport-security" not in response.headers  # plain HTTP: meaningless
    assert auth.http.get("/nowhere").headers["x-content-type-options"] == "nosniff"
    tls = TestClient(auth.app, base_url="https://testserver")
    tls.portal = auth.http.portal
    assert tls.get("/healthz").headers["strict-transport-security"] == "max-age=31536000"


def test_admin_api_checks_the_token_before_the_body(auth: Auth) -> None:
    for body in (b"{not json", b'{"lot": 1}', b"[" * 5000):
        response = auth.http.post(
            "/admin/devices", content=body, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 401, response.text
    op_id, op_secret = auth.operator()
    reader = auth.token(op_id, op_secret, audience=INGEST_AUDIENCE)
    response = auth.http.post(
        "/admin/devices", content=b"{not json", headers={"Authorization": f"Bearer {reader}"}
    )
    assert response.status_code == 401  # a token for another audience, still before the body


def test_grace_s_must_be_an_integer(auth: Auth) -> None:
    op_id, op_secret = auth.operator()
    admin = {"Authorization": "Bearer " + auth.token(op_id, op_secret, audience=ADMIN_AUDIENCE)}
    device_id, _secret = auth.device()
    for grace in (True, "1", 1.5):
        response = auth.http.post(
            f"/admin/devices/{device_id}/rotate-secret", json={"grace_s": grace}, headers=admin
        )
        assert response.status_code == 422, (grace, response.text)
        assert response.json()["error"] == "invalid_request"
    # null is "the server's default" (a 500 once, found by `make fuzz`); 60.0 is an integer.
    for ok_grace in (None, 60.0):
        response = auth.http.post(
            f"/admin/devices/{device_id}/rotate-secret", json={"grace_s": ok_grace}, headers=admin
        )
        assert response.status_code == 200, (ok_grace, response.text)


def test_no_server_banner_and_no_mqtt_password_on_the_command_line(tmp_path: Path) -> None:
    with ServiceProcess(tmp_path / "data") as service, service.client() as http:
        response = http.get("/healthz")
        assert "server" not in response.headers
    refused = subprocess.run(
        [sys.executable, "-m", "provisioning", "serve", "--data-dir", str(tmp_path / "d"),
         "--mqtt", "mqtt://svc:s3cret@127.0.0.1:1883"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 1
    assert "--mqtt-password-file" in refused.stderr and "PARK_MQTT_URL" in refused.stderr
    assert "s3cret" not in refused.stderr + refused.stdout
    helped = subprocess.run(
        [sys.executable, "-m", "provisioning", "serve", "--help"],
        capture_output=True, text=True, timeout=60, env={"COLUMNS": "200", "PATH": ""},
    )  # fmt: skip
    assert "--mqtt-password-file" in helped.stdout and "PARK_MQTT_URL" in helped.stdout
