"""HTTP routes of the authorization server: token, introspection, JWKS, metadata, metrics."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response

from provisioning.common.scopes import ADMIN_AUDIENCE, ALL_SCOPES, AUDIENCES, DEVICES_ADMIN
from provisioning.common.text import NO_NUL_PATTERN
from provisioning.service.auth import scopes
from provisioning.service.auth.clients import ClientAuthenticator, ClientRecord, extract_credentials
from provisioning.service.auth.deps import require_token
from provisioning.service.auth.errors import (
    NO_STORE,
    InvalidRequest,
    InvalidToken,
    OAuthError,
    oauth_error_handler,
)
from provisioning.service.auth.failures import SIGN_IN_SOURCE, FailureAudit, FailureLimits
from provisioning.service.auth.keys import JWKS_MAX_AGE_S
from provisioning.service.auth.ratelimit import SharedBuckets, TokenBuckets
from provisioning.service.auth.tokens import (
    FORM,
    GRANT_TYPE,
    MAX_BODY,
    ClientCredentialsGrant,
    IssuanceAudit,
    check_grant_type,
    parse_params,
)
from provisioning.service.context import ServiceContext
from provisioning.service.metrics import LatencyMiddleware, metrics_endpoint
from provisioning.service.web.body import read_body
from provisioning.service.web.hot import RouteDoc, add_hot_route

JSON_TYPE = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]


def _json(body: dict[str, Any], headers: dict[str, str]) -> Response:
    return Response(json.dumps(body).encode(), headers=headers, media_type=JSON_TYPE)


# The same headers, in the same order, as `_json(body, NO_STORE)` sends.
_NO_STORE_RAW = [(name.lower().encode(), value.encode()) for name, value in NO_STORE.items()]
_JSON_TYPE_RAW = (b"content-type", JSON_TYPE.encode())


class _NoStoreJSON(Response):
    """A 200 JSON answer with `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).

    The token endpoint's hot path: `Response.__init__` rebuilds and re-encodes the constant
    headers on each call, and `json.dumps` is several times slower than orjson, together ~25 µs
    of server CPU per token (measured). Here the constant headers are encoded once.
    """

    def __init__(self, body: dict[str, Any]) -> None:
        self.status_code = 200
        self.background = None
        self.body = orjson.dumps(body)
        self.raw_headers = [
            *_NO_STORE_RAW,
            (b"content-length", str(len(self.body)).encode()),
            _JSON_TYPE_RAW,
        ]


def _token_headers(raw: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None, str | None]:
    """Content-Length, Content-Type and Authorization (the first of each, like
    `Request.headers.get`) in one pass over the ASGI headers, whose names are lower case:
    building `Headers` for three lookups costs ~3 µs, this ~0.5 µs (measured)."""
    length = content_type = authorization = None
    for name, value in raw:
        if name == b"content-length" and length is None:
            length = value
        elif name == b"content-type" and content_type is None:
            content_type = value
        elif name == b"authorization" and authorization is None:
            authorization = value
    return (
        None if length is None else length.decode("latin-1"),
        None if content_type is None else content_type.decode("latin-1"),
        None if authorization is None else authorization.decode("latin-1"),
    )


def _body_schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    # Unknown parameters are ignored (RFC 6749 §3.1) but must be text, like the known ones.
    schema = {
        "type": "object",
        "properties": properties,
        "required": required,
        "propertyNames": {"pattern": NO_NUL_PATTERN},
        "additionalProperties": {"type": "string", "pattern": NO_NUL_PATTERN},
    }
    return {
        "required": True,
        "content": {FORM: {"schema": schema}, JSON_TYPE: {"schema": schema}},
    }


_TEXT = {"type": "string", "maxLength": 256, "pattern": NO_NUL_PATTERN}
_CLIENT = {"client_id": _TEXT, "client_secret": _TEXT}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "invalid_request, invalid_scope, invalid_target, ... (RFC 6749 §5.2)"},
    401: {"description": "invalid_client (RFC 6749 §5.2)"},
    413: {"description": "Body over 16 KB"},
    429: {"description": "too_many_requests, with Retry-After"},
    503: {"description": "temporarily_unavailable, with Retry-After"},
}


def _install_oauth_routes(app: FastAPI, token: Endpoint, introspect: Endpoint) -> None:
    """The two OAuth endpoints, hot endpoints (web/hot.py): every board asks for tokens."""
    token_body = _body_schema(
        {
            "grant_type": {"type": "string", "enum": [GRANT_TYPE]},
            "audience": {"type": "string", "enum": list(AUDIENCES)},
            "scope": _TEXT,
            **_CLIENT,
        },
        ["grant_type"],
    )
    _oauth_post(
        app,
        "/oauth/token",
        token,
        "Client credentials grant (RFC 6749 §4.4)",
        "Client authentication by HTTP Basic or client_id/client_secret in the body, never "
        "both. Failed authentications are limited per source and per client ID.",
        token_body,
        "access_token, token_type, expires_in, scope",
    )
    introspect_body = _body_schema({"token": {**_TEXT, "minLength": 1}, **_CLIENT}, ["token"])
    _oauth_post(
        app,
        "/oauth/introspect",
        introspect,
        "Token introspection for operators (RFC 7662)",
        'Any other caller gets {"active": false} (RFC 7662 §4).',
        introspect_body,
        "active, and the token's claims if it is",
    )


def _oauth_post(
    app: FastAPI,
    path: str,
    endpoint: Endpoint,
    summary: str,
    description: str,
    body: dict[str, Any],
    answer: str,
) -> None:
    # An OAuth endpoint: a form or JSON body, its 200 answer and the RFC 6749 §5.2 errors. It
    # parses its own body (RFC 6749 §3.2 rules that a model cannot express).
    doc = RouteDoc(
        summary=summary,
        tags=["oauth"],
        description=description,
        responses={200: {"description": answer}, **_ERROR_RESPONSES},
        openapi_extra={"requestBody": body},
    )
    add_hot_route(app, "POST", path, endpoint, doc)


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """Add the OAuth error handler, metrics and (unless this process only checks tokens
    against a remote JWKS) the authorization server's routes to `app`."""
    app.add_exception_handler(OAuthError, oauth_error_handler)
    app.add_middleware(LatencyMiddleware, metrics=ctx.metrics, router=app.router)
    router = APIRouter(include_in_schema=False)
    if ctx.settings.metrics_public:
        router.add_api_route("/metrics", metrics_endpoint, methods=["GET"])
    else:
        # Counts of clients, refusals and routes tell an attacker how the service is used:
        # an operator token (the admin audience) unless PARK_METRICS_PUBLIC opens it.
        check = require_token(ADMIN_AUDIENCE, DEVICES_ADMIN)

        async def protected_metrics(request: Request) -> Response:
            await check(request)
            return await metrics_endpoint(request)

        router.add_api_route("/metrics", protected_metrics, methods=["GET"])
    app.include_router(router)
    if ctx.settings.jwks_url:
        # A resource server only (RFC 9068 §4): the authorization server, its keys and its
        # token endpoint live in another process.
        return
    _install_authorization_server(app, ctx)


def _install_authorization_server(app: FastAPI, ctx: ServiceContext) -> None:
    settings = ctx.settings
    ctx.keys.ensure_active()  # first start: create the signing key before anything is served
    # Failed authentications: limited and audited apart from issuance (failures.py).
    failure_audit = FailureAudit(ctx.sessions, settings.auth_fail_audit_window_s)
    ctx.on_shutdown.append(failure_audit.close)
    authenticator = ClientAuthenticator(
        ctx.engine, ctx.hasher, FailureLimits(settings, failure_audit)
    )
    ctx.on_shutdown.append(authenticator.close)
    burst, per_hour = settings.token_rate_burst, settings.token_rate_per_hour
    if ctx.engine.dialect.name == "postgresql":
        # Every instance on the database shares the buckets, taken with the audit record.
        local, shared = None, SharedBuckets(burst, per_hour, "issue:")
    else:
        local, shared = TokenBuckets(burst, per_hour), None
    grant = ClientCredentialsGrant(ctx.keys, settings.issuer_url, settings.token_ttl, local)
    metrics = ctx.metrics
    issued = functools.cache(metrics.tokens_issued.labels)
    refused = functools.cache(metrics.tokens_refused.labels)
    issuance_audit = IssuanceAudit(ctx.engine, shared)
    ctx.on_shutdown.append(issuance_audit.close)

    async def read_params(
        request: Request, sign_in: str | None = None
    ) -> tuple[dict[str, str], ClientRecord]:
        # The one client lookup: inline on SQLite; on PostgreSQL the lookups of one loop turn
        # share one SELECT in a thread (clients.ClientRows), not one round trip each holding
        # the loop (a thread pool per lookup was measured no better: PostgreSQL's CPU per
        # statement was the limit).
        length, content_type, authorization = _token_headers(request.scope["headers"])
        body = await read_body(length, request.stream(), MAX_BODY)
        params = parse_params(content_type, body)
        client = request.scope.get("client")
        source = sign_in or (client[0] if client else "unknown")
        return params, await authenticator.authenticate(
            extract_credentials(authorization, params), source, sign_in is None
        )

    async def token(request: Request) -> Response:
        """RFC 6749 §4.4: the client credentials grant; answers RFC 6749 §5.1/§5.2 JSON."""
        # The dashboard's sign-in (failures.py): not an issuance to the client, so it takes
        # nothing from the client's issuance bucket; the audit names the browser's address.
        sign_in: str | None = request.scope.get(SIGN_IN_SOURCE)
        try:
            params, client = await read_params(request, sign_in)
            check_grant_type(params)
            audience, granted = grant.validate_token_request(client, params, sign_in is None)
            claims = grant.claims(client, audience, granted)
            detail = {"aud": audience, "scope": claims["scope"], "jti": claims["jti"]}
            if sign_in is not None:
                detail["sign_in_from"] = sign_in
            # Committed before the token is signed: no token is out that the audit log does
            # not show (on PostgreSQL the shared bucket is taken in the same transaction).
            await issuance_audit.record(client.client_id, detail, sign_in is None)
        except OAuthError as error:
            refused(error.error).inc()
            raise
        issued(audience).inc()
        return _NoStoreJSON(grant.sign(claims))

    async def introspect(request: Request) -> Response:
        """RFC 7662 §2: token metadata for resource servers that do not verify JWTs."""
        params, caller = await read_params(request)
        token_value = params.get("token")
        if token_value is None:
            raise InvalidRequest("token is required")
        if caller.kind not in scopes.INTROSPECTION_KINDS:
            # RFC 7662 §4: a caller not entitled learns nothing, not even that it is not.
            return _NoStoreJSON({"active": False})
        try:
            principal = await ctx.verifier.verify(token_value, None)
        except InvalidToken:
            # RFC 7662 §2.2: unknown, expired, forged or revoked all look the same.
            return _NoStoreJSON({"active": False})
        claims = principal.claims
        answer = {
            "active": True,
            "scope": claims["scope"],
            "client_id": claims["client_id"],
            "sub": claims["sub"],
            "aud": claims["aud"],
            "iss": claims["iss"],
            "exp": claims["exp"],
            "iat": claims["iat"],
            "jti": claims["jti"],
            "token_type": "Bearer",
        }
        if principal.lot is not None:
            answer["lot"] = principal.lot
        return _NoStoreJSON(answer)

    _install_oauth_routes(app, token, introspect)
    router = APIRouter(tags=["oauth"])

    @router.get("/.well-known/jwks.json")
    async def jwks() -> Response:
        """The public signing keys (RFC 7517 §5); cacheable, never a private part."""
        return _json(ctx.keys.jwks(), {"Cache-Control": f"public, max-age={JWKS_MAX_AGE_S}"})

    metadata = {
        "issuer": settings.issuer_url,
        "token_endpoint": settings.issuer_url + "/oauth/token",
        "jwks_uri": settings.issuer_url + "/.well-known/jwks.json",
        "introspection_endpoint": settings.issuer_url + "/oauth/introspect",
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "scopes_supported": list(ALL_SCOPES),
        # RFC 8414 §2 requires the member; there is no authorization endpoint here.
        "response_types_supported": [],
    }

    @router.get("/.well-known/oauth-authorization-server")
    async def server_metadata() -> Response:
        """RFC 8414 §3: authorization server metadata."""
        return _json(metadata, {"Cache-Control": f"public, max-age={JWKS_MAX_AGE_S}"})

    app.include_router(router)
