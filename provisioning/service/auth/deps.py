"""FastAPI dependencies for protected resources (RFC 6750).

    CurrentDevice = Annotated[Principal, Depends(require_token(INGEST_AUDIENCE, COUNTS_WRITE))]

Refusals are `OAuthError`s rendered by the app's one handler: 401 with
`WWW-Authenticate: Bearer realm="parkfleet"` (plus `error="invalid_token"` when a token was
presented but is no good), 403 with `error="insufficient_scope"`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request

from provisioning.service.auth.errors import InsufficientScope, InvalidToken, MissingToken
from provisioning.service.auth.principal import Principal
from provisioning.service.context import ServiceContext


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1)."""
    if authorization is None:
        raise MissingToken("bearer token required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        # Another scheme is not a bearer token at all: only the challenge (RFC 6750 §3.1).
        raise MissingToken("bearer token required")
    token = token.strip()
    if not token:
        raise InvalidToken("empty bearer token")
    return token


def require_token(audience: str, scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency yielding the `Principal` of a valid token for `audience` with `scope`."""

    async def dependency(request: Request) -> Principal:
        ctx: ServiceContext = request.app.state.ctx
        token = bearer_token(request.headers.get("authorization"))
        principal = await ctx.verifier.verify(token, audience)
        if scope not in principal.scopes:
            raise InsufficientScope(scope)
        return principal

    return dependency
