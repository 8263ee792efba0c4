"""OAuth 2.0 errors: one class per RFC error code, each knowing its HTTP status.

Token endpoint errors follow RFC 6749 §5.2 (plus `invalid_target` from RFC 8707 §2); resource
server refusals follow RFC 6750 §3. `oauth_error_response` is the single place that renders any of
them as JSON `{"error", "error_description"}` with the right `WWW-Authenticate` header.
Descriptions are fixed strings chosen by the server: never a secret, never echoed input.
"""

from __future__ import annotations

import json
import math

from starlette.requests import Request
from starlette.responses import Response

REALM = "parkfleet"


class OAuthError(Exception):
    """Base class; subclasses set `error` (the RFC code) and `status_code`."""

    error = "server_error"
    status_code = 400

    def __init__(self, description: str = "") -> None:
        super().__init__(description or self.error)
        self.description = description

    def headers(self) -> dict[str, str]:
        return {}

    def body(self) -> dict[str, str]:
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body


# --- RFC 6749 §5.2: token endpoint (and introspection endpoint client authentication) ---


class InvalidRequest(OAuthError):
    """Missing, repeated or malformed parameter; unsupported body; several auth methods."""

    error = "invalid_request"


class InvalidClient(OAuthError):
    """Client authentication failed (unknown client, wrong secret, disabled or deleted).

    RFC 6749 §5.2: 401, and `WWW-Authenticate` naming the scheme the client tried when it used
    the Authorization header.
    """

    error = "invalid_client"
    status_code = 401

    def __init__(self, description: str = "client authentication failed", basic: bool = False):
        super().__init__(description)
        self.basic = basic

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'Basic realm="{REALM}"'} if self.basic else {}


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class InvalidTarget(OAuthError):
    """RFC 8707 §2: the requested audience is unknown or not allowed for this client."""

    error = "invalid_target"


class PayloadTooLarge(InvalidRequest):
    """A body over the endpoint's limit, refused before it is read whole."""

    status_code = 413


class UnsupportedMediaType(InvalidRequest):
    """A body in a media type the endpoint does not take (RFC 9110 §15.5.16: 415)."""

    status_code = 415


class TooManyRequests(OAuthError):
    """The client's token bucket is empty (RFC 6585 §4: 429 with `Retry-After`).

    RFC 6749 defines no code for this; like Auth0's M2M quota we answer `too_many_requests`
    so a client can tell throttling apart from a fault in its request.
    """

    error = "too_many_requests"
    status_code = 429

    def __init__(
        self, retry_after_s: float, description: str = "token rate limit exceeded; retry later"
    ) -> None:
        super().__init__(description)
        # Retry-After is whole seconds (RFC 9110 §10.2.3); round up so an obedient client wins.
        self.retry_after = max(1, math.ceil(retry_after_s))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TemporarilyUnavailable(OAuthError):
    """The server cannot answer now (RFC 6749 §4.1.2.1's code; 503 with `Retry-After`)."""

    error = "temporarily_unavailable"
    status_code = 503

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


# --- RFC 6750 §3: protected resources ---


class BearerError(OAuthError):
    """A refusal at a protected resource, carried in `WWW-Authenticate: Bearer ...`."""

    status_code = 401
    scope: str | None = None

    def headers(self) -> dict[str, str]:
        params = [f'realm="{REALM}"']
        if self.error != "":
            params.append(f'error="{self.error}"')
            if self.description:
                params.append(f'error_description="{_quote(self.description)}"')
        if self.scope:
            params.append(f'scope="{self.scope}"')
        return {"WWW-Authenticate": "Bearer " + ", ".join(params)}


class MissingToken(BearerError):
    """RFC 6750 §3.1: no credentials at all get no error code, only the challenge."""

    error = ""

    def body(self) -> dict[str, str]:
        return {"error": "invalid_request", "error_description": self.description}


class InvalidToken(BearerError):
    """Malformed, forged, expired or revoked token, or the wrong audience (RFC 6750 §3.1)."""

    error = "invalid_token"


class InsufficientScope(BearerError):
    """A valid token without the scope the resource needs (RFC 6750 §3.1: 403)."""

    error = "insufficient_scope"
    status_code = 403

    def __init__(self, scope: str) -> None:
        super().__init__(f"this resource needs scope {scope}")
        self.scope = scope


def _quote(text: str) -> str:
    # quoted-string (RFC 9110 §5.6.4); descriptions are ours, so only guard the delimiters.
    return text.replace("\\", "\\\\").replace('"', "'")


# Every JSON error response says it must not be cached (RFC 6749 §5.1 for the token endpoint).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error_response(error: OAuthError) -> Response:
    """Render `error` as the RFC's JSON body, status and headers."""
    return Response(
        json.dumps(error.body()).encode(),
        status_code=error.status_code,
        headers={**NO_STORE, **error.headers()},
        media_type="application/json",
    )


async def oauth_error_handler(_request: Request, exc: Exception) -> Response:
    """The app-wide exception handler for `OAuthError` (installed by `auth.routes.install`)."""
    assert isinstance(exc, OAuthError)
    return oauth_error_response(exc)
