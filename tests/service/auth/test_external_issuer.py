"""Tokens of an external authorization server: node-oidc-provider for real (tools/harness/
oidcprovider.py) in front of the real service process, `--trust-issuer` its URL."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tools.harness.clients import register_devices, register_operator
from tools.harness.net import free_port
from tools.harness.oidcprovider import OidcProvider, RegisteredClient
from tools.harness.server import ServiceProcess
from tools.harness.services import postgres_database


@dataclass
class Park:
    """The service trusting `idp`, with an operator's admin token."""

    proc: ServiceProcess
    idp: OidcProvider
    http: httpx.Client
    admin: dict[str, str]
    operator: tuple[str, str]
    seq: int = 0

    def register(self, client_id: str, lot: str = "lot-x", **extra: Any) -> httpx.Response:
        body = {"lot": lot, "name": "ext board", "client_id": client_id, "issuer": self.idp.issuer}
        return self.http.post("/admin/devices", json={**body, **extra}, headers=self.admin)

    def board(self) -> tuple[RegisteredClient, str]:
        """A client of the provider registered in parkfleet too, and a token of it."""
        client = self.idp.register()
        response = self.register(client.client_id)
        assert response.status_code == 201, response.text
        return client, self.idp.token(client)

    def post(self, token: str) -> httpx.Response:
        self.seq += 1
        return self.http.post(
            "/v1/counts",
            json={"readings": [{"seq": self.seq, "cars": 5}]},
            headers={"Authorization": f"Bearer {token}"},
        )


def admin_headers(http: httpx.Client, operator: tuple[str, str]) -> dict[str, str]:
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "audience": "parkfleet-admin"},
        auth=operator,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def park(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Park]:
    """SQLite, or PostgreSQL when parametrised with "postgresql"."""
    with ExitStack() as stack:
        pg = getattr(request, "param", None) == "postgresql"
        db = stack.enter_context(postgres_database()) if pg else None
        idp = stack.enter_context(OidcProvider(tmp_path / "idp"))
        data = tmp_path / "data"
        operator = register_operator(data, db)
        args = ["--trust-issuer", idp.issuer, "--ingest-audience", idp.audience]
        with ServiceProcess(data, db=db, extra_args=args) as proc, proc.client() as http:
            yield Park(proc, idp, http, admin_headers(http, operator), operator)


def test_a_provider_token_of_a_registered_board_is_accepted_and_its_counts_stored(
    park: Park,
) -> None:
    client, token = park.board()
    response = park.post(token)
    assert response.status_code == 200, park.proc.log()
    assert response.json() == {"accepted": 1, "duplicates": 0}
    device = park.http.get(f"/admin/devices/{client.client_id}", headers=park.admin).json()
    assert device["issuer"] == park.idp.issuer and device["lot"] == "lot-x"
    assert device["reading"]["cars"] == 5
    # Built-in boards beside it work as before, and show no issuer.
    (builtin,) = register_devices(park.proc.data_dir, lot="lot-y")
    answer = park.http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=builtin)
    assert park.post(answer.json()["access_token"]).status_code == 200
    listed = park.http.get("/admin/devices", headers=park.admin).json()["items"]
    assert {d["client_id"]: d["issuer"] for d in listed} == {
        client.client_id: park.idp.issuer,
        builtin[0]: None,
    }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"


def test_every_forged_or_foreign_token_is_refused(park: Park) -> None:
    client, good = park.board()
    assert park.post(good).status_code == 200
    header = jwt.get_unverified_header(good)
    claims = jwt.decode(good, options={"verify_signature": False})
    now = int(time.time())
    jwks = httpx.get(park.idp.metadata()["jwks_uri"]).json()
    public_jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public_pem = jwt.algorithms.RSAAlgorithm.from_jwk(public_jwk)
    assert isinstance(public_pem, rsa.RSAPublicKey)
    pem = public_pem.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    hs_input = _unsigned({**header, "alg": "HS256"}, claims)
    stranger = park.idp.register()  # a client of the provider parkfleet does not know
    (builtin,) = register_devices(park.proc.data_dir, lot="lot-y")  # not this issuer's
    head, body, sig = good.split(".")
    twisted = sig[:-1] + ("B" if sig[-1] == "A" else "A")  # another spelling or another value
    forged = {
        "client of the provider unknown here": park.idp.token(stranger),
        "token for another audience": park.idp.token(client, resource=park.idp.other_audience),
        "HS256 keyed with the public key (PEM)": hs_input
        + "."
        + _b64(hmac.new(pem, hs_input.encode(), hashlib.sha256).digest()),
        "HS256 keyed with the public JWK text": hs_input
        + "."
        + _b64(
            hmac.new(json.dumps(public_jwk).encode(), hs_input.encode(), hashlib.sha256).digest()
        ),
        "alg none": _unsigned({**header, "alg": "none"}, claims) + ".",
        "jku in the header": park.idp.sign(claims, {"jku": f"{park.idp.issuer}/jwks"}),
        "jwk in the header": park.idp.sign(claims, {"jwk": public_jwk}),
        "x5u in the header": park.idp.sign(claims, {"x5u": f"{park.idp.issuer}/cert.pem"}),
        "iss with a trailing slash": park.idp.sign({**claims, "iss": park.idp.issuer + "/"}),
        "expired": park.idp.sign({**claims, "iat": now - 900, "exp": now - 300}),
        "not yet valid": park.idp.sign({**claims, "nbf": now + 3600}),
        "no exp": park.idp.sign({k: v for k, v in claims.items() if k != "exp"}),
        "scope a board may not hold": park.idp.sign({**claims, "scope": "counts:read"}),
        "aud list without the ingest audience": park.idp.sign({**claims, "aud": ["x", "y"]}),
        "a built-in board's client ID": park.idp.sign({**claims, "client_id": builtin[0]}),
        "another signature": f"{head}.{body}.{twisted}",
        "padded segment": f"{head}.{body}.{sig}=",
    }
    for name, token in forged.items():
        response = park.post(token)
        assert response.status_code == 401, f"{name}: {response.status_code} {response.text}"
        assert "invalid_token" in response.headers["www-authenticate"], name
    # The real one still works: nothing above poisoned a cache.
    assert park.post(good).status_code == 200
    # An audience list that contains ours is fine (RFC 7519 §4.1.3).
    listed = park.idp.sign({**claims, "aud": ["x", park.idp.audience], "jti": uuid.uuid4().hex})
    assert park.post(listed).status_code == 200


def _refused_within(park: Park, token: str, seconds: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if park.post(token).status_code == 401:
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"still accepted after {seconds} s")


@pytest.mark.parametrize("park", [None, "postgresql"], indirect=True, ids=["sqlite", "pg"])
def test_disabling_or_deleting_an_external_board_refuses_its_posts_within_a_second(
    park: Park,
) -> None:
    client, token = park.board()
    assert park.post(token).status_code == 200
    url = f"/admin/devices/{client.client_id}"
    assert park.http.post(f"{url}/disable", headers=park.admin).status_code == 200
    assert _refused_within(park, token, 1.0) < 1.0
    assert park.http.post(f"{url}/enable", headers=park.admin).status_code == 200
    # The disable revoked what was issued up to its (whole) second.
    time.sleep(1.1)
    fresh = park.idp.token(client)
    assert park.post(fresh).status_code == 200
    assert park.http.delete(url, headers=park.admin).status_code == 204
    assert _refused_within(park, fresh, 1.0) < 1.0


def test_the_provider_rotates_its_key_and_next_tokens_are_accepted_without_restart(
    park: Park,
) -> None:
    client, old = park.board()
    assert park.post(old).status_code == 200
    new_key = park.idp.rotate_keys()
    new = park.idp.token(client)
    assert jwt.get_unverified_header(new)["kid"] == new_key.kid
    assert park.post(new).status_code == 200, park.proc.log()
    assert park.post(old).status_code == 200  # the old key is still published


def test_a_flood_of_made_up_kids_costs_at_most_one_more_jwks_fetch(park: Park) -> None:
    client, good = park.board()
    assert park.post(good).status_code == 200
    before = park.idp.stats()["jwks"]
    claims = jwt.decode(good, options={"verify_signature": False})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for _ in range(150):
        forged = jwt.encode(claims, key, "RS256", headers={"kid": uuid.uuid4().hex})
        assert park.post(forged).status_code == 401
    assert park.idp.stats()["jwks"] - before <= 1
    assert before + park.idp.stats()["jwks"] - before <= 2  # start-up fetch included
    assert park.post(park.idp.token(client)).status_code == 200


def test_an_issuer_that_is_down_keeps_cached_keys_working_and_shows_degraded(
    park: Park,
) -> None:
    client, first = park.board()
    assert park.post(first).status_code == 200
    assert park.http.get("/readyz").json()["degraded"] == []
    later = park.idp.token(client)  # issued while up, first used while it is down
    claims = jwt.decode(first, options={"verify_signature": False})
    park.idp.stop()
    # A token naming a key we never saw makes us try the issuer: it is down.
    unknown = jwt.encode(
        claims,
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "RS256",
        headers={"kid": "never-seen"},
    )
    assert park.post(unknown).status_code == 401
    ready = park.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["degraded"] == [f"issuer:{park.idp.issuer}"]
    assert park.post(later).status_code == 200, park.proc.log()
    assert park.http.get("/healthz").status_code == 200


def test_registering_external_boards_is_checked(park: Park) -> None:
    response = park.http.post(
        "/admin/devices",
        json={"lot": "l", "name": "n", "client_id": "abc", "issuer": "https://evil.example/"},
        headers=park.admin,
    )
    assert response.status_code == 422 and "not trusted" in response.text
    only_one = {"lot": "l", "name": "n", "client_id": "abc"}
    assert park.http.post("/admin/devices", json=only_one, headers=park.admin).status_code == 422
    bad_id = park.register("has space")
    assert bad_id.status_code == 422
    created = park.register("ext-board-1")
    assert created.status_code == 201, created.text
    assert "client_secret" not in created.json() and created.json()["issuer"] == park.idp.issuer
    again = park.register("ext-board-1")
    assert again.status_code == 409 and "already registered" in again.text
    rotate = park.http.post("/admin/devices/ext-board-1/rotate-secret", headers=park.admin)
    assert rotate.status_code == 409 and park.idp.issuer in rotate.text
    # Nor can it get a token from the built-in server: it has no secret here.
    token = park.http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=("ext-board-1", "x" * 43)
    )
    assert token.status_code == 401
    config = park.http.get("/admin/config", headers=park.admin)
    assert config.json() == {
        "ingest_audience": park.idp.audience,
        "trusted_issuers": [park.idp.issuer],
    }
    assert park.http.get("/admin/config").status_code == 401


@pytest.mark.parametrize("alg", ["ES256", "PS256", "EdDSA"])
def test_tokens_signed_with_each_asymmetric_algorithm_are_accepted(
    tmp_path: Path, alg: str
) -> None:
    with OidcProvider(tmp_path / "idp", alg=alg) as idp:
        data = tmp_path / "data"
        operator = register_operator(data)
        args = ["--trust-issuer", idp.issuer, "--ingest-audience", idp.audience]
        with ServiceProcess(data, extra_args=args) as proc, proc.client() as http:
            park = Park(proc, idp, http, admin_headers(http, operator), operator)
            _client, token = park.board()
            assert jwt.get_unverified_header(token)["alg"] == alg
            assert park.post(token).status_code == 200, proc.log()


def test_device_list_and_the_dashboard_show_each_boards_issuer(park: Park, tmp_path: Path) -> None:
    client, _token = park.board()
    (builtin,) = register_devices(park.proc.data_dir, lot="lot-y")
    env = {
        **os.environ,
        "PARK_SERVER": park.proc.url,
        "PARK_CLIENT_ID": park.operator[0],
        "PARK_CLIENT_SECRET": park.operator[1],
        "PARK_CACHE_DIR": str(tmp_path / "cache"),
    }
    listed = subprocess.run(
        [sys.executable, "-m", "provisioning", "device", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    issuers = {d["client_id"]: d["issuer"] for d in json.loads(listed.stdout)}
    assert issuers == {client.client_id: park.idp.issuer, builtin[0]: None}
    form = park.http.get("/ui/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    signed_in = park.http.post(
        "/ui/login",
        data={
            "csrf": csrf.group(1),
            "client_id": park.operator[0],
            "client_secret": park.operator[1],
            "next": "/ui/boards",
        },
    )
    assert signed_in.status_code == 303, signed_in.text
    boards = park.http.get("/ui/boards")
    assert boards.status_code == 200
    assert f"<code>{park.idp.issuer}</code>" in boards.text and "<td>parkfleet</td>" in boards.text
    page = park.http.get(f"/ui/boards/{client.client_id}")
    assert f"<code>{park.idp.issuer}</code>" in page.text
    assert "/rotate-secret" not in page.text  # its secret lives in the external server


def test_an_issuer_down_at_start_does_not_stop_the_service(tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    args = ["--trust-issuer", nobody]
    with ServiceProcess(tmp_path / "data", extra_args=args) as proc, proc.client() as http:
        deadline = time.monotonic() + 10
        while (ready := http.get("/readyz")).json()["degraded"] == [] and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "degraded": [f"issuer:{nobody}"]}
        assert http.get("/healthz").status_code == 200
        assert "Traceback" not in proc.log()
