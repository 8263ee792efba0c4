"""The Auth0 double answers as Auth0's documentation says (the pages are cited in
tools/harness/auth0double_app.py): token shapes, errors, Management API scopes, rate limits.
A double that drifted from Auth0 would make every end-to-end test against it worthless."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest

from tools.harness.auth0double import Auth0Double


@pytest.fixture(scope="module")
def tenant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Auth0Double]:
    with Auth0Double(tmp_path_factory.mktemp("auth0")) as double:
        yield double


def _http(tenant: Auth0Double) -> httpx.Client:
    return httpx.Client(
        base_url=f"https://{tenant.domain}",
        verify=ssl.create_default_context(cafile=tenant.ca_file),
    )


def _management_token(tenant: Auth0Double, scopes: list[str] | None = None) -> str:
    client_id, secret = tenant.create_m2m(scopes)
    with _http(tenant) as http:
        answer = http.post(
            "/oauth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": secret,
                "audience": f"https://{tenant.domain}/api/v2/",
            },
        )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def test_board_token_is_shaped_like_auth0s(tenant: Auth0Double) -> None:
    """An M2M app with a client grant: RS256 token with Auth0's claims, verifiable by the JWKS
    the discovery document names; JSON and form bodies both work; Basic auth as registered."""
    token = _management_token(tenant)
    with _http(tenant) as http:
        made = http.post(
            "/api/v2/clients",
            headers={"Authorization": f"Bearer {token}"},
            json={"name": "board", "app_type": "non_interactive",
                  "grant_types": ["client_credentials"],
                  "token_endpoint_auth_method": "client_secret_basic"},
        )  # fmt: skip
        assert made.status_code == 201, made.text
        board = made.json()
        assert len(board["client_secret"]) >= 43
        grant = http.post(
            "/api/v2/client-grants",
            headers={"Authorization": f"Bearer {token}"},
            json={"client_id": board["client_id"], "audience": tenant.ingest_audience,
                  "scope": ["counts:write"]},
        )  # fmt: skip
        assert grant.status_code == 201, grant.text
        auth = (board["client_id"], board["client_secret"])
        body = {"grant_type": "client_credentials", "audience": tenant.ingest_audience}
        as_json = http.post("/oauth/token", json=body, auth=auth)
        as_form = http.post("/oauth/token", data=body, auth=auth)
        # Registered for Basic: the same credentials in the body are refused.
        in_body = http.post("/oauth/token", json={**body, "client_id": auth[0],
                                                  "client_secret": auth[1]})  # fmt: skip
        metadata = http.get("/.well-known/openid-configuration").json()
        jwks = http.get(metadata["jwks_uri"].removeprefix(f"https://{tenant.domain}")).json()
    assert as_json.status_code == as_form.status_code == 200, as_json.text
    assert in_body.status_code == 401 and in_body.json()["error"] == "access_denied"
    answer = as_json.json()
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 86400
    assert metadata["issuer"] == tenant.issuer and tenant.issuer.endswith("/")
    header = jwt.get_unverified_header(answer["access_token"])
    assert header["alg"] == "RS256" and header["kid"] == jwks["keys"][0]["kid"]
    key = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(answer["access_token"], key, algorithms=["RS256"],
                        audience=tenant.ingest_audience, issuer=tenant.issuer)  # fmt: skip
    assert claims["sub"] == f"{board['client_id']}@clients"
    assert claims["azp"] == board["client_id"] and claims["gty"] == "client-credentials"
    assert claims["scope"] == "counts:write" and claims["permissions"] == ["counts:write"]
    assert claims["exp"] - claims["iat"] == 86400


def test_token_endpoint_errors(tenant: Auth0Double) -> None:
    client_id, secret = tenant.create_m2m()
    with _http(tenant) as http:

        def ask(**body: str) -> httpx.Response:
            return http.post("/oauth/token", json={"grant_type": "client_credentials", **body})

        no_audience = ask(client_id=client_id, client_secret=secret)
        wrong_secret = ask(client_id=client_id, client_secret="x" * 64, audience="a")
        no_grant = ask(client_id=client_id, client_secret=secret, audience=tenant.ingest_audience)
        unknown = ask(client_id=client_id, client_secret=secret, audience="https://nope/")
    assert no_audience.status_code == 403 and no_audience.json()["error"] == "access_denied"
    assert "No audience parameter" in no_audience.json()["error_description"]
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "access_denied"
    assert no_grant.status_code == 403 and "client-grant" in no_grant.json()["error_description"]
    assert unknown.status_code == 403 and "Service not found" in unknown.text


def test_management_api_checks_scopes_and_bodies(tenant: Auth0Double) -> None:
    reader = _management_token(tenant, ["read:clients"])
    writer = _management_token(tenant)
    with _http(tenant) as http:
        missing = http.get("/api/v2/clients")
        denied = http.post("/api/v2/clients", json={"name": "x"},
                           headers={"Authorization": f"Bearer {reader}"})  # fmt: skip
        extra = http.post("/api/v2/clients", json={"name": "x", "bogus": 1},
                          headers={"Authorization": f"Bearer {writer}"})  # fmt: skip
        no_api = http.post(
            "/api/v2/client-grants",
            headers={"Authorization": f"Bearer {writer}"},
            json={"client_id": "nobody", "audience": "https://nope/", "scope": []},
        )
        listed = http.get("/api/v2/clients", headers={"Authorization": f"Bearer {reader}"})
    assert missing.status_code == 401 and missing.json()["statusCode"] == 401
    assert denied.status_code == 403 and denied.json()["errorCode"] == "insufficient_scope"
    assert "create:clients" in denied.json()["message"]
    assert extra.status_code == 400 and extra.json()["errorCode"] == "invalid_body"
    assert no_api.status_code == 404 and no_api.json()["errorCode"] == "inexistent_client"
    assert listed.status_code == 200
    assert all("client_secret" not in c for c in listed.json())  # needs read:client_keys


def test_rate_limit_answers_429_with_reset(tenant: Auth0Double) -> None:
    token = _management_token(tenant)
    tenant.rate_limit(2, window_s=2.0)
    try:
        with _http(tenant) as http:
            headers = {"Authorization": f"Bearer {token}"}
            answers = [http.get("/api/v2/clients", headers=headers) for _ in range(3)]
            reset = int(answers[2].headers["x-ratelimit-reset"])
            time.sleep(max(0.0, reset - time.time()) + 0.1)
            after = http.get("/api/v2/clients", headers=headers)
    finally:
        tenant.rate_limit(1000)
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit"] == "2"
    assert answers[1].headers["x-ratelimit-remaining"] == "0"
    assert answers[2].json()["errorCode"] == "too_many_requests"
    assert reset >= int(time.time()) - 3
    assert after.status_code == 200


def test_double_log_has_no_secrets(tenant: Auth0Double, tmp_path: Path) -> None:
    client_id, secret = tenant.create_m2m()
    _management_token(tenant)
    assert secret not in tenant.log() and client_id not in tenant.log()
