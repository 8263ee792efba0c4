"""The Auth0 double's tenant: clients, client grants, APIs, the signing key and the rate bucket.

The behaviours and the Auth0 pages they follow are listed in `tools.harness.auth0double_app`;
the tags in brackets ([TOKEN], [CLAIMS], [CLIENTS], [GRANTS], [ERRORS], [RATE]) refer there.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

# The Management API's scopes parkctl may be given (a real tenant has many more).
MANAGEMENT_SCOPES = (
    "read:clients",
    "create:clients",
    "update:clients",
    "delete:clients",
    "read:client_keys",
    "update:client_keys",
    "read:client_grants",
    "create:client_grants",
    "update:client_grants",
    "delete:client_grants",
    "read:resource_servers",
)
TOKEN_LIFETIME_S = 86400  # [TOKEN] the default for APIs
CLIENT_FIELDS = {
    "name",
    "description",
    "app_type",
    "grant_types",
    "token_endpoint_auth_method",
    "client_metadata",
    "is_first_party",
    "oidc_conformant",
    "jwt_configuration",
    "callbacks",
}


class ApiError(Exception):
    """A Management API error [ERRORS]."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class OAuthError(Exception):
    """A token endpoint error [ERRORS]."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    503: "Service Unavailable",
}


class Tenant:
    """One tenant's state: clients, grants, APIs, the signing key, the rate bucket."""

    def __init__(self, origin: str, ingest_audience: str) -> None:
        self.lock = threading.Lock()
        self.issuer = origin + "/"  # [CLAIMS] the trailing slash is part of `iss`
        self.management_audience = origin + "/api/v2/"
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_urlsafe(16)
        self.clients: dict[str, dict[str, Any]] = {}
        self.grants: dict[str, dict[str, Any]] = {}
        self.apis: dict[str, dict[str, Any]] = {}
        self._add_api("Auth0 Management API", self.management_audience, MANAGEMENT_SCOPES, False)
        self._add_api("parkfleet ingest", ingest_audience, ("counts:write", "counts:read"), True)
        self.rate_limit, self.rate_window_s = 1000, 1.0
        self.bucket_until, self.bucket_used = 0.0, 0
        self.failures: list[dict[str, Any]] = []  # injected by the test
        self.requests = {"management": 0, "limited": 0, "token": 0}

    def _add_api(self, name: str, identifier: str, scopes: tuple[str, ...], rbac: bool) -> None:
        self.apis[identifier] = {
            "id": secrets.token_hex(12),
            "name": name,
            "identifier": identifier,
            "scopes": [{"value": s, "description": s} for s in scopes],
            "signing_alg": "RS256",
            "token_lifetime": TOKEN_LIFETIME_S,
            "enforce_policies": rbac,
            "token_dialect": "access_token_authz" if rbac else "access_token",
            "is_system": not rbac,
        }

    # --- rate limit [RATE] ---

    def take(self) -> tuple[bool, dict[str, str]]:
        """Count one Management API request; (allowed, the x-ratelimit-* headers)."""
        now = time.time()
        if now >= self.bucket_until:
            self.bucket_until, self.bucket_used = now + self.rate_window_s, 0
        allowed = self.bucket_used < self.rate_limit
        if allowed:
            self.bucket_used += 1
        headers = {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(0, self.rate_limit - self.bucket_used)),
            "x-ratelimit-reset": str(int(-(-self.bucket_until // 1))),  # whole seconds, up
        }
        return allowed, headers

    # --- tokens [TOKEN] [CLAIMS] ---

    def issue(self, client: dict[str, Any], audience: str, asked: str | None) -> dict[str, Any]:
        api = self.apis.get(audience)
        if api is None:
            raise OAuthError(403, "access_denied", f"Service not found: {audience}")
        grant = next(
            (
                g
                for g in self.grants.values()
                if g["client_id"] == client["client_id"] and g["audience"] == audience
            ),
            None,
        )
        if grant is None:
            raise OAuthError(
                403,
                "access_denied",
                f'Client is not authorized to access "{audience}". You need to create a '
                '"client-grant" associated to this API. See: '
                "https://auth0.com/docs/api/v2#!/Client_Grants/post_client_grants",
            )
        scopes = list(grant["scope"])
        if asked:  # a requested scope narrows what the grant allows
            scopes = [s for s in scopes if s in asked.split()]
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": f"{client['client_id']}@clients",
            "aud": audience,
            "iat": now,
            "exp": now + api["token_lifetime"],
            "scope": " ".join(scopes),
            "gty": "client-credentials",
            "azp": client["client_id"],
        }
        if api["token_dialect"] == "access_token_authz":
            claims["permissions"] = scopes
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        return {
            "access_token": token,
            "scope": claims["scope"],
            "expires_in": api["token_lifetime"],
            "token_type": "Bearer",
        }

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return {"keys": [jwk]}

    def scopes_of(self, authorization: str) -> set[str]:
        """The Management API token's scopes; 401 without a valid one [ERRORS]."""
        if not authorization.startswith("Bearer "):
            raise ApiError(401, "Missing authentication")
        try:
            claims = jwt.decode(
                authorization[7:],
                self.key.public_key(),
                algorithms=["RS256"],
                audience=self.management_audience,
                issuer=self.issuer,
            )
        except jwt.PyJWTError:
            raise ApiError(401, "Invalid token", "invalid_token") from None
        return set(str(claims.get("scope", "")).split())

    # --- clients [CLIENTS] ---

    def new_client(self, body: dict[str, Any]) -> dict[str, Any]:
        extra = sorted(set(body) - CLIENT_FIELDS)
        if extra:
            raise ApiError(
                400,
                f"Payload validation error: 'Additional properties not allowed: {extra[0]}'.",
                "invalid_body",
            )
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(
                400, "Payload validation error: 'Missing required property: name'.", "invalid_body"
            )
        metadata = body.get("client_metadata", {})
        if not isinstance(metadata, dict) or not all(
            isinstance(v, str) and len(v) <= 255 for v in metadata.values()
        ):
            raise ApiError(
                400,
                "Payload validation error: 'client_metadata values must be "
                "strings of at most 255 characters'.",
                "invalid_body",
            )
        client = {
            "client_id": secrets.token_urlsafe(24)[:32].replace("-", "A").replace("_", "b"),
            "client_secret": secrets.token_urlsafe(48),
            "name": name,
            "description": body.get("description", ""),
            "app_type": body.get("app_type", "regular_web"),
            "grant_types": body.get(
                "grant_types", ["authorization_code", "implicit", "refresh_token"]
            ),
            "token_endpoint_auth_method": body.get(
                "token_endpoint_auth_method", "client_secret_post"
            ),
            "client_metadata": metadata,
            "is_first_party": True,
            "oidc_conformant": True,
            "jwt_configuration": {"alg": "RS256", "lifetime_in_seconds": 36000},
            "tenant": "double",
            "global": False,
        }
        self.clients[client["client_id"]] = client
        return client

    def client(self, client_id: str) -> dict[str, Any]:
        return _existing(self.clients, client_id, "The client does not exist", "inexistent_client")

    # --- client grants [GRANTS] ---

    def new_grant(self, body: dict[str, Any]) -> dict[str, Any]:
        client_id, audience, scope = body.get("client_id"), body.get("audience"), body.get("scope")
        if (
            not isinstance(client_id, str)
            or not isinstance(audience, str)
            or not (isinstance(scope, list) and all(isinstance(s, str) for s in scope))
        ):
            raise ApiError(
                400,
                "Payload validation error: 'Missing required property: "
                "client_id, audience or scope'.",
                "invalid_body",
            )
        self.client(client_id)
        api = _existing(
            self.apis,
            audience,
            f"No resource server found with identifier {audience}",
            "inexistent_resource_server",
        )
        known = {s["value"] for s in api["scopes"]}
        unknown = [s for s in scope if s not in known]
        if unknown:
            raise ApiError(
                400,
                f"Client grant scopes not defined on the resource server: {', '.join(unknown)}",
                "invalid_body",
            )
        if any(
            g["client_id"] == client_id and g["audience"] == audience for g in self.grants.values()
        ):
            raise ApiError(
                409,
                "A client grant for this client and audience already exists",
                "client_grant_conflict",
            )
        grant = {
            "id": "cgr_" + secrets.token_hex(8),
            "client_id": client_id,
            "audience": audience,
            "scope": list(scope),
        }
        self.grants[grant["id"]] = grant
        return grant

    def grant(self, grant_id: str) -> dict[str, Any]:
        return _existing(
            self.grants, grant_id, "The client grant does not exist", "inexistent_client_grant"
        )


def _existing(
    items: dict[str, dict[str, Any]], key: str, message: str, code: str
) -> dict[str, Any]:
    """`items[key]`, or the Management API's 404 with `message` and `code` [ERRORS]."""
    found = items.get(key)
    if found is None:
        raise ApiError(404, message, code)
    return found


def needs(scopes: set[str], *any_of: str) -> None:
    """403 unless the token has one of `any_of` [ERRORS]."""
    if not scopes.intersection(any_of):
        raise ApiError(
            403, f"Insufficient scope, expected any of: {','.join(any_of)}", "insufficient_scope"
        )


def public(client: dict[str, Any], with_secret: bool) -> dict[str, Any]:
    return {k: v for k, v in client.items() if with_secret or k != "client_secret"}
