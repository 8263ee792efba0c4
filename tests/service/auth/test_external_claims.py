"""The rules for external tokens that need no server: identity, scopes, key types and
algorithms, header checks, token encoding and issuer URLs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from provisioning.common.errors import ParkctlError
from provisioning.service.auth.errors import InvalidToken
from provisioning.service.auth.external import (
    check_algorithm,
    check_header,
    granted_scopes,
    identity,
)
from provisioning.service.auth.issuers import IssuerKey, key_algorithms, metadata_urls, parse_jwks
from provisioning.service.config import from_flags
from tools.harness.parkctl import parkctl


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"client_id": "c1", "azp": "a1", "sub": "s1"}, "c1"),  # RFC 9068
        ({"azp": "a1", "sub": "s1@clients"}, "a1"),  # Auth0 puts the client in azp
        ({"sub": "s1@clients"}, "s1"),  # Auth0's client-credentials sub
        ({"sub": "s1"}, "s1"),
        ({"sub": "@clients"}, None),
        ({"client_id": "", "sub": "s1"}, "s1"),
        ({"client_id": 7, "azp": ["x"], "sub": "s1"}, "s1"),  # not strings: skipped
        ({}, None),
    ],
)
def test_the_board_is_client_id_else_azp_else_sub_without_the_auth0_suffix(
    claims: dict[str, Any], expected: str | None
) -> None:
    assert identity(claims) == expected


def test_scopes_come_from_scope_and_auth0_permissions() -> None:
    assert granted_scopes({"scope": "counts:write  counts:read"}) == {"counts:write", "counts:read"}
    assert granted_scopes({"permissions": ["counts:write", 3]}) == {"counts:write"}
    assert granted_scopes({"scope": "a", "permissions": ["b"]}) == {"a", "b"}
    assert granted_scopes({"scope": ["counts:write"], "permissions": "counts:write"}) == set()


def _jwk(exporter: Any, key: Any, **extra: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(exporter.to_jwk(key.public_key()))
    return {**jwk, **extra}


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
P384_KEY = ec.generate_private_key(ec.SECP384R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def test_each_key_type_allows_only_its_asymmetric_algorithms() -> None:
    assert key_algorithms(_jwk(RSAAlgorithm, RSA_KEY)) == {"RS256", "PS256"}
    assert key_algorithms(_jwk(RSAAlgorithm, RSA_KEY, alg="PS256")) == {"PS256"}
    assert key_algorithms(_jwk(RSAAlgorithm, RSA_KEY, alg="HS256")) == set()
    assert key_algorithms(_jwk(ECAlgorithm, EC_KEY)) == {"ES256"}
    assert key_algorithms(_jwk(ECAlgorithm, EC_KEY, alg="RS256")) == set()
    assert key_algorithms(_jwk(ECAlgorithm, P384_KEY)) == set()
    assert key_algorithms(_jwk(OKPAlgorithm, ED_KEY)) == {"EdDSA"}
    assert key_algorithms(_jwk(RSAAlgorithm, RSA_KEY, use="enc")) == set()
    assert key_algorithms({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}) == set()


def test_a_jwks_keeps_usable_public_keys_only() -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    document = {
        "keys": [
            _jwk(RSAAlgorithm, RSA_KEY, kid="rsa"),
            _jwk(ECAlgorithm, EC_KEY, kid="ec"),
            _jwk(OKPAlgorithm, ED_KEY, kid="ed"),
            _jwk(RSAAlgorithm, RSA_KEY),  # no kid: a token cannot name it
            _jwk(RSAAlgorithm, short, kid="short"),
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "kid": "broken", "n": "AA", "e": "AQAB"},
            "not a key",
        ]
    }
    keys = parse_jwks(document)
    assert set(keys) == {"rsa", "ec", "ed"}
    assert keys["ec"].algorithms == {"ES256"}
    with pytest.raises(ValueError, match="JWKS"):
        parse_jwks({"keys": "none"})


def test_the_header_may_not_bring_its_own_key_nor_choose_an_algorithm_the_key_refuses() -> None:
    assert check_header({"alg": "RS256", "kid": "k", "typ": "at+jwt"}) == "k"
    assert check_header({"alg": "RS256", "kid": "k", "typ": "JWT"}) == "k"  # Auth0
    assert check_header({"alg": "RS256", "kid": "k"}) == "k"
    for bad in (
        {"kid": "k", "jku": "https://x/jwks"},
        {"kid": "k", "jwk": {}},
        {"kid": "k", "x5u": "https://x/c.pem"},
        {"kid": "k", "x5c": ["MII"]},
        {"kid": "k", "typ": "id_token+jwt"},
        {"alg": "RS256"},
    ):
        with pytest.raises(InvalidToken):
            check_header(bad)
    rsa_key = IssuerKey(RSA_KEY.public_key(), frozenset({"RS256", "PS256"}))
    assert check_algorithm({"alg": "PS256"}, rsa_key) == "PS256"
    for alg in ("none", "HS256", "ES256", "EdDSA", None, "RS512"):
        with pytest.raises(InvalidToken):
            check_algorithm({"alg": alg}, rsa_key)


def test_metadata_is_looked_up_as_discovery_then_rfc_8414_say() -> None:
    assert metadata_urls("https://tenant.auth0.com/") == [
        "https://tenant.auth0.com/.well-known/openid-configuration",
        "https://tenant.auth0.com/.well-known/oauth-authorization-server",
    ]
    assert metadata_urls("https://kc.example/realms/park") == [
        "https://kc.example/realms/park/.well-known/openid-configuration",
        "https://kc.example/.well-known/oauth-authorization-server/realms/park",
    ]


def test_trusted_issuers_must_be_https_unless_on_loopback(tmp_path: Path) -> None:
    ok = from_flags(
        {
            "data_dir": tmp_path,
            "trust_issuers": "https://t.auth0.com/,http://127.0.0.1:9/,http://localhost:8/x",
        }
    )
    assert ok.trusted_issuers == (
        "https://t.auth0.com/",
        "http://127.0.0.1:9/",
        "http://localhost:8/x",
    )
    assert ok.ingest_audience == "parkfleet-ingest"
    for bad in (
        "http://idp.example/",
        "ftp://x/",
        "https://x/?a=1",
        "https:///",
        "https://u:pw@x/",
    ):
        with pytest.raises(ParkctlError, match="--trust-issuer") as refused:
            from_flags({"data_dir": tmp_path, "trust_issuers": bad})
        assert "pw" not in str(refused.value)


def test_serve_refuses_a_plain_http_issuer_elsewhere_with_one_clear_line(tmp_path: Path) -> None:
    done = parkctl(
        "serve",
        "--data-dir",
        str(tmp_path),
        "--port",
        "0",
        "--trust-issuer",
        "https://ok.example/",
        "--trust-issuer",
        "http://idp.example/",
        timeout=60,
    )
    assert done.returncode != 0
    assert "plain http is allowed only on loopback" in done.stderr
    assert "Traceback" not in done.stderr
