"""Access tokens from a trusted external authorization server (RFC 9068, RFC 8725; Auth0's
shape too). The caller (verify.py) has already checked the token's size and encoding, and picked
the issuer by the token's unverified `iss`, which must equal a trusted URL exactly.

- The key comes only from that issuer's JWKS (issuers.py), by `kid`: a key carried or pointed to
  by the token header (`jwk`, `jku`, `x5u`, `x5c`) is refused, never fetched (RFC 8725 §3.10).
- The algorithm must be one the key allows (RS256/PS256 for RSA, ES256 for P-256, EdDSA for
  Ed25519): never `none`, never HMAC, so a public key can never be used as an HMAC secret.
- `iss` exact, `aud` (string or list) containing the ingest audience, `exp`, `nbf`, `iat` with
  the same leeway as built-in tokens.
- The board is `client_id` (RFC 9068 §2.2), else `azp`, else `sub` without Auth0's `@clients`
  suffix; scopes from `scope` (space-separated, RFC 8693 §4.2) and Auth0's `permissions` array.
  Whether that board exists, is registered for this issuer, enabled, and its lot: the registry
  decides (verify.py `_check_client`), never the token.
"""

from __future__ import annotations

from typing import Any

from provisioning.common.scopes import INGEST_AUDIENCE
from provisioning.service.auth.claims import decode_checked
from provisioning.service.auth.errors import InvalidToken
from provisioning.service.auth.issuers import IssuerKey, TrustedIssuers
from provisioning.service.auth.principal import Principal

# Header parameters that name or carry a key: the key is ours to choose, never the token's.
KEY_HEADERS = ("jwk", "jku", "x5u", "x5c")
AUTH0_CLIENT_SUFFIX = "@clients"  # Auth0 client-credentials tokens: sub = CLIENT_ID@clients
_ACCESS_TYPES = ("at+jwt", "application/at+jwt", "jwt")
_REQUIRED = ["iss", "aud", "exp", "iat"]


def identity(claims: dict[str, Any]) -> str | None:
    """The client the token was issued to: `client_id`, else `azp`, else `sub` (Auth0's
    `@clients` suffix removed); None if none is a non-empty string."""
    for name in ("client_id", "azp"):
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    sub = claims.get("sub")
    if isinstance(sub, str):
        return sub.removesuffix(AUTH0_CLIENT_SUFFIX) or None
    return None


def granted_scopes(claims: dict[str, Any]) -> frozenset[str]:
    """Scopes from `scope` (space-separated) and Auth0's `permissions` (a list of strings)."""
    found: set[str] = set()
    scope = claims.get("scope")
    if isinstance(scope, str):
        found.update(scope.split())
    permissions = claims.get("permissions")
    if isinstance(permissions, list):
        found.update(p for p in permissions if isinstance(p, str))
    return frozenset(found)


def check_header(header: dict[str, Any]) -> str:
    """The `kid` of a header that names no key of its own and no other type than an access
    token (RFC 9068 §2.1 `at+jwt`; Auth0 sends `JWT`)."""
    if any(name in header for name in KEY_HEADERS):
        raise InvalidToken("token header carries or points to a key")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in _ACCESS_TYPES):
        raise InvalidToken("not an access token (typ)")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise InvalidToken("token names no key")
    return kid


def check_algorithm(header: dict[str, Any], key: IssuerKey) -> str:
    """The token's algorithm if the issuer's key allows it."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in key.algorithms:
        raise InvalidToken("algorithm not allowed for the issuer's key")
    return alg


class ExternalTokens:
    """Verifies tokens of the trusted issuers for the ingestion API's audience."""

    def __init__(self, issuers: TrustedIssuers, audience: str, leeway_s: float) -> None:
        self.issuers = issuers
        self.audience = audience
        self._leeway_s = leeway_s

    async def verify(self, token: str, header: dict[str, Any], iss: str) -> Principal:
        """The principal (kind and lot still to be filled in from the registry)."""
        issuer = self.issuers.by_url[iss]
        kid = check_header(header)  # before any fetch: a refused token costs none
        key = issuer.key(kid) or await issuer.key_or_refetch(kid)
        if key is None:
            raise InvalidToken("unknown signing key")
        alg = check_algorithm(header, key)
        # One algorithm the key allows: the header cannot widen it.
        claims = decode_checked(token, key.key, alg, self.audience, iss, self._leeway_s, _REQUIRED)
        client_id = identity(claims)
        if client_id is None or not isinstance(claims["iat"], int | float):
            raise InvalidToken("invalid token claims")
        return Principal(
            client_id=client_id,
            kind="",  # from the registry
            audience=INGEST_AUDIENCE,  # the ingestion API, whatever the operator named it
            scopes=granted_scopes(claims),
            lot=None,  # from the registry: external servers do not know lots
            claims=claims,
            issuer=iss,
        )
