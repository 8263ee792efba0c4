"""The shared bearer-token checker and `require_token` (RFC 6750, RFC 8725, RFC 9068 §4)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Annotated, Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends

from provisioning.common.scopes import (
    ADMIN_AUDIENCE,
    COUNTS_READ,
    COUNTS_WRITE,
    INGEST_AUDIENCE,
)
from provisioning.service.auth.deps import require_token
from provisioning.service.auth.errors import InvalidToken
from provisioning.service.auth.principal import Principal
from provisioning.service.auth.verify import ClientDirectory
from provisioning.service.registry import service as registry
from tests.service.auth.conftest import ISSUER, Auth, jwt_parts


def add_probe(auth: Auth) -> None:
    """A protected resource like the ingestion API's, for the tests."""

    @auth.app.get("/probe")
    async def probe(
        who: Annotated[Principal, Depends(require_token(INGEST_AUDIENCE, COUNTS_WRITE))],
    ) -> dict[str, Any]:
        return {"client_id": who.client_id, "kind": who.kind, "lot": who.lot}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def claims_for(client_id: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": client_id,
        "client_id": client_id,
        "aud": INGEST_AUDIENCE,
        "iat": now,
        "exp": now + 600,
        "jti": "t" * 16,
        "scope": COUNTS_WRITE,
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def server_key(auth: Auth) -> tuple[str, ec.EllipticCurvePrivateKey]:
    signer = auth.ctx.keys.signer()
    return signer.kid, signer.private_key


def forge(auth: Auth, claims: dict[str, Any], **header: Any) -> str:
    """A token signed with the server's real key (so only the named flaw is wrong)."""
    kid, key = server_key(auth)
    return jwt.encode(
        claims, key, algorithm="ES256", headers={"typ": "at+jwt", "kid": kid, **header}
    )


def assert_invalid_token(response: Any) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="parkfleet"')
    assert 'error="invalid_token"' in challenge
    assert response.json()["error"] == "invalid_token"


@pytest.fixture
def probe(auth: Auth) -> Auth:
    add_probe(auth)
    return auth


def test_valid_token_yields_the_principal(probe: Auth) -> None:
    client_id, secret = probe.device(lot="west")
    response = probe.http.get("/probe", headers=bearer(probe.token(client_id, secret)))
    assert response.status_code == 200, response.text
    assert response.json() == {"client_id": client_id, "kind": "device", "lot": "west"}


def test_no_token_is_a_bare_challenge(probe: Auth) -> None:
    for headers in ({}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        response = probe.http.get("/probe", headers=headers)
        assert response.status_code == 401
        # RFC 6750 §3.1: no error code when the request carried no token.
        assert response.headers["www-authenticate"] == 'Bearer realm="parkfleet"'
        assert set(response.json()) == {"error", "error_description"}


def test_wrong_scope_is_403_insufficient_scope(probe: Auth) -> None:
    op_id, op_secret = probe.operator()
    token = probe.token(op_id, op_secret, audience=INGEST_AUDIENCE, scope=COUNTS_READ)
    response = probe.http.get("/probe", headers=bearer(token))
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert f'scope="{COUNTS_WRITE}"' in challenge
    assert response.json()["error"] == "insufficient_scope"


def test_wrong_audience_is_invalid_token(probe: Auth) -> None:
    op_id, op_secret = probe.operator()
    token = probe.token(op_id, op_secret, audience=ADMIN_AUDIENCE)
    assert_invalid_token(probe.http.get("/probe", headers=bearer(token)))


def test_forged_tokens_are_refused(probe: Auth) -> None:
    client_id, secret = probe.device()
    good = probe.token(client_id, secret)
    kid, _key = server_key(probe)
    claims = claims_for(client_id)
    public_pem = (
        probe.ctx.keys.signer()
        .private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header_none = b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": kid}).encode())
    header_hs = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}).encode())
    body = b64(json.dumps(claims).encode())
    import hashlib
    import hmac

    hs_sig = hmac.new(public_pem, f"{header_hs}.{body}".encode(), hashlib.sha256).digest()
    head, _payload, sig = good.split(".")
    tampered_claims = jwt_parts(good)[1] | {"sub": "dev_someone_else", "client_id": "x"}
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = {
        "alg none": f"{header_none}.{body}.",
        "HS256 keyed with the public key": f"{header_hs}.{body}.{b64(hs_sig)}",
        "tampered payload": f"{head}.{b64(json.dumps(tampered_claims).encode())}.{sig}",
        "expired": forge(probe, claims_for(client_id, iat=1000, exp=2000)),
        "not yet valid": forge(probe, claims_for(client_id, nbf=int(time.time()) + 3600)),
        "wrong issuer": forge(probe, claims_for(client_id, iss="https://evil.example")),
        "wrong audience": forge(probe, claims_for(client_id, aud="someone-else")),
        "missing exp": forge(probe, claims_for(client_id, exp=None)),
        "missing scope": forge(probe, claims_for(client_id, scope=None)),
        "typ JWT": forge(probe, claims_for(client_id), typ="JWT"),
        "unknown kid": jwt.encode(
            claims_for(client_id), other_key, "ES256", headers={"typ": "at+jwt", "kid": "nope"}
        ),
        "right kid, other key": jwt.encode(
            claims_for(client_id), other_key, "ES256", headers={"typ": "at+jwt", "kid": kid}
        ),
        "scope the device may not hold": forge(probe, claims_for(client_id, scope=COUNTS_READ)),
        "unknown subject": forge(probe, claims_for("dev_ghost")),
        "garbage": "not.a.jwt",
        "empty segments": "..",
    }
    for name, token in forged.items():
        response = probe.http.get("/probe", headers=bearer(token))
        assert response.status_code == 401, name
        assert 'error="invalid_token"' in response.headers["www-authenticate"], name
    # Leeway is small but real: 10 s past exp still passes, 60 s does not.
    now = int(time.time())
    ok = forge(probe, claims_for(client_id, iat=now - 100, exp=now - 10))
    assert probe.http.get("/probe", headers=bearer(ok)).status_code == 200
    late = forge(probe, claims_for(client_id, iat=now - 100, exp=now - 60))
    assert_invalid_token(probe.http.get("/probe", headers=bearer(late)))


def test_disabled_or_deleted_device_is_refused_at_once_in_process(auth: Auth) -> None:
    # The registry in this process commits the change: the cached status is dropped at once
    # (other processes sharing the database see it within device_status_ttl_s).
    add_probe(auth)
    client_id, secret = auth.device()
    token = auth.token(client_id, secret)
    assert auth.http.get("/probe", headers=bearer(token)).status_code == 200  # now cached
    with auth.ctx.sessions() as session:
        registry.disable(session, "test", client_id)
    assert_invalid_token(auth.http.get("/probe", headers=bearer(token)))
    with auth.ctx.sessions() as session:
        registry.enable(session, "test", client_id)
    # Tokens issued before the disable stay revoked; the secret gets fresh ones.
    assert_invalid_token(auth.http.get("/probe", headers=bearer(token)))
    token = auth.token(client_id, secret)
    assert auth.http.get("/probe", headers=bearer(token)).status_code == 200
    with auth.ctx.sessions() as session:
        registry.delete_device(session, "test", client_id)
    assert_invalid_token(auth.http.get("/probe", headers=bearer(token)))


def test_status_cache_bounds_how_long_a_disabled_device_works(auth_any_db: Auth) -> None:
    auth = auth_any_db
    client_id, _secret = auth.device()
    directory = ClientDirectory(auth.ctx.engine, ttl_s=30)
    record = directory.get(client_id, now=100.0)
    assert record is not None and record.active and record.kind == "device"
    with auth.ctx.sessions() as session:
        registry.disable(session, "test", client_id)
    cached = directory.get(client_id, now=129.0)
    assert cached is not None and cached.active  # still within the 30 s bound
    fresh = directory.get(client_id, now=130.5)
    assert fresh is not None and not fresh.active
    directory.forget(client_id)
    assert directory.get("dev_ghost", now=0.0) is None


def test_verified_tokens_are_cached_and_counted(probe: Auth) -> None:
    client_id, secret = probe.device()
    token = probe.token(client_id, secret)
    for _ in range(3):
        assert probe.http.get("/probe", headers=bearer(token)).status_code == 200
    metrics = bytes(probe.ctx.metrics.render().body).decode()
    assert 'parkfleet_token_checks_total{result="verified"} 1.0' in metrics
    assert 'parkfleet_token_checks_total{result="cache_hit"} 2.0' in metrics


def test_cache_never_outlives_exp(probe: Auth) -> None:
    client_id, _secret = probe.device()
    now = int(time.time())
    # Inside the 30 s leeway for about one more second.
    token = forge(probe, claims_for(client_id, iat=now - 100, exp=now - 29))
    verifier = probe.ctx.verifier
    asyncio.run(verifier.verify(token, INGEST_AUDIENCE))
    time.sleep(1.5)
    with pytest.raises(InvalidToken):
        asyncio.run(verifier.verify(token, INGEST_AUDIENCE))


def test_introspection(auth: Auth) -> None:
    client_id, secret = auth.device()
    rs_id, rs_secret = auth.operator("resource server")
    token = auth.token(client_id, secret)

    def introspect(value: str) -> Any:
        response = auth.http.post(
            "/oauth/introspect", data={"token": value}, auth=(rs_id, rs_secret)
        )
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        return response.json()

    answer = introspect(token)
    claims = jwt_parts(token)[1]
    assert answer["active"] is True
    for name in ("scope", "client_id", "sub", "aud", "iss", "exp", "iat"):
        assert answer[name] == claims[name]
    assert answer["token_type"] == "Bearer"
    assert introspect("garbage") == {"active": False}
    expired = forge(auth, claims_for(client_id, iat=1000, exp=2000))
    assert introspect(expired) == {"active": False}
    with auth.ctx.sessions() as session:
        registry.disable(session, "test", client_id)
    assert introspect(token) == {"active": False}
    # The caller must authenticate as a client (RFC 7662 §2.1).
    response = auth.http.post("/oauth/introspect", data={"token": token})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    response = auth.http.post("/oauth/introspect", data={}, auth=(rs_id, rs_secret))
    assert response.status_code == 400


def test_only_entitled_callers_may_introspect(auth: Auth) -> None:
    # RFC 7662 §4: a device learns nothing, even about its own token.
    device_id, device_secret = auth.device()
    op_id, op_secret = auth.operator()
    admin_token = auth.token(op_id, op_secret, audience=ADMIN_AUDIENCE)
    device_token = auth.token(device_id, device_secret)
    for token in (admin_token, device_token):
        response = auth.http.post(
            "/oauth/introspect", data={"token": token}, auth=(device_id, device_secret)
        )
        assert response.status_code == 200
        assert response.json() == {"active": False}
        response = auth.http.post(
            "/oauth/introspect", data={"token": token}, auth=(op_id, op_secret)
        )
        assert response.json()["active"] is True


def _post_counts(auth: Auth, token: str, seq: int) -> int:
    body = {"readings": [{"seq": seq, "cars": 1}]}
    headers = {"Authorization": f"Bearer {token}"}
    return int(auth.http.post("/v1/counts", json=body, headers=headers).status_code)


def _active(auth: Auth, token: str, operator: tuple[str, str]) -> bool:
    answer = auth.http.post("/oauth/introspect", data={"token": token}, auth=operator).json()
    return bool(answer["active"])


def test_zero_grace_rotation_and_disable_revoke_issued_tokens(auth_any_db: Auth) -> None:
    # The leaked-secret path (docs/service.md) must end the tokens minted with it.
    auth = auth_any_db
    operator = auth.operator()
    client_id, secret = auth.device()
    old = auth.token(client_id, secret)
    assert _post_counts(auth, old, 1) == 200
    with auth.ctx.sessions() as session:  # with a grace period tokens stay valid
        _client, secret = registry.rotate_secret(session, auth.ctx.hasher, "t", client_id, 60)
    assert _post_counts(auth, old, 2) == 200
    with auth.ctx.sessions() as session:
        _client, secret = registry.rotate_secret(session, auth.ctx.hasher, "t", client_id, 0)
    assert _post_counts(auth, old, 3) == 401
    assert not _active(auth, old, operator)
    # A token from the new secret works at once, even within the same second.
    new = auth.token(client_id, secret)
    assert _post_counts(auth, new, 4) == 200
    assert _active(auth, new, operator)
    # Disable revokes too, and enabling again does not bring those tokens back.
    with auth.ctx.sessions() as session:
        registry.disable(session, "t", client_id)
        registry.enable(session, "t", client_id)
    assert _post_counts(auth, new, 5) == 401
    assert not _active(auth, new, operator)
    assert _post_counts(auth, auth.token(client_id, secret), 6) == 200


def test_revocation_reaches_other_processes_within_the_bound(auth_any_db: Auth) -> None:
    # Another server sharing the database learns of the revocation from its status cache.
    auth = auth_any_db
    client_id, _secret = auth.device()
    directory = ClientDirectory(auth.ctx.engine, ttl_s=30)
    assert directory.get(client_id, now=100.0).tokens_valid_after is None  # type: ignore[union-attr]
    with auth.ctx.sessions() as session:
        registry.rotate_secret(session, auth.ctx.hasher, "t", client_id, 0)
    cached = directory.get(client_id, now=129.0)
    assert cached is not None and cached.tokens_valid_after is None  # within the bound
    fresh = directory.get(client_id, now=130.5)
    assert fresh is not None and fresh.tokens_valid_after is not None


def test_non_canonical_base64url_spellings_of_a_valid_token_are_refused(probe: Auth) -> None:
    client_id, secret = probe.device()
    token = probe.token(client_id, secret)
    assert probe.http.get("/probe", headers=bearer(token)).status_code == 200
    header, claims, signature = token.split(".")
    # The ES256 signature is 64 bytes: 86 characters, whose last carries 4 unused bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    spare_bits = alphabet[last ^ 0b0001]
    variants = [
        token + "==",
        token + "=",
        f"{header}==.{claims}.{signature}",
        f"{header}.{claims}=.{signature}",
        f"{header}.{claims}.{signature[:-1]}{spare_bits}",
        f"{header}.{claims}.{signature}A",
    ]
    for variant in variants:
        response = probe.http.get("/probe", headers=bearer(variant))
        assert response.status_code == 401, (variant, response.text)
        assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_canonical_jws_rule() -> None:
    from provisioning.service.auth.verify import is_canonical_jws

    assert is_canonical_jws("eyJ0.eyJ0.AAAA")
    assert is_canonical_jws("..")  # empty segments are canonical; the JWT parser refuses them
    for bad in ("eyJ0.eyJ0.AAAA=", "eyJ0.eyJ0", "a.b.c.d", "eyJ0.eyJ0.AB", "eyJ0.ey+0.AAAA"):
        assert not is_canonical_jws(bad), bad
    # Against the definition: a spelling is canonical iff decoding and re-encoding gives it back.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for size in range(1, 8):
        good = b64(bytes(range(200, 200 + size)))
        assert is_canonical_jws(f"{good}.{good}.{good}")
        for last in alphabet:
            part = good[:-1] + last
            again = b64(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            assert is_canonical_jws(f"e30.e30.{part}") == (again == part), part
