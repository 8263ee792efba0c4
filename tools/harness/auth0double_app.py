"""The Auth0 double's server: the Authentication and Management API v2 endpoints parkfleet uses.

Run as its own process by `tools.harness.auth0double` (never imported by product code). Every
behaviour follows a page of Auth0's published documentation, named where it is implemented:

- [TOKEN] Client Credentials Flow, https://auth0.com/docs/get-started/authentication-and-
  authorization-flow/client-credentials-flow/call-your-api-using-the-client-credentials-flow and
  https://auth0.com/docs/api/authentication#client-credentials-flow: `POST /oauth/token`, form or
  JSON body (the docs' curl sends form, the API explorer's "Test" tab sends JSON), `audience`
  required, answer `{"access_token", "scope", "expires_in": 86400, "token_type": "Bearer"}`.
- [CLAIMS] Access token profiles, https://auth0.com/docs/secure/tokens/access-tokens/access-token-
  profiles and Validate access tokens, https://auth0.com/docs/secure/tokens/access-tokens/
  validate-access-tokens: RS256, `kid` header, `iss` = `https://DOMAIN/` (trailing slash),
  `sub` = `CLIENT_ID@clients`, `azp`, `gty: client-credentials`, `scope`, and `permissions` when the
  API uses the `access_token_authz` dialect (RBAC "Add Permissions in the Access Token").
- [DISCOVERY] https://auth0.com/docs/get-started/applications/configure-applications-with-oidc-
  discovery and https://auth0.com/docs/secure/tokens/json-web-tokens/json-web-key-sets.
- [CLIENTS] https://auth0.com/docs/api/management/v2/clients/post-clients, get-clients,
  get-clients-by-id, patch-clients-by-id, delete-clients-by-id, post-rotate-secret; scopes
  `create:clients`, `read:clients` (+`read:client_keys` to see secrets), `update:clients`
  (+`update:client_keys` for secrets), `delete:clients`; rotate-secret needs `update:client_keys`.
- [GRANTS] https://auth0.com/docs/api/management/v2/client-grants/post-client-grants,
  get-client-grants, patch-client-grants-by-id, delete-client-grants-by-id.
- [ERRORS] Management API errors are `{"statusCode", "error", "message", "errorCode"}`
  (https://auth0.com/docs/api/management/v2#!/errors); the token endpoint answers
  `{"error", "error_description"}` (https://auth0.com/docs/api/authentication#standard-error-
  responses).
- [RATE] https://auth0.com/docs/troubleshoot/customer-support/operational-policies/rate-limit-
  policy: every Management API answer carries `x-ratelimit-limit`, `x-ratelimit-remaining` and
  `x-ratelimit-reset` (UNIX time in seconds when the bucket refills); over the budget a 429
  `{"statusCode": 429, "error": "Too Many Requests", "message": "Global limit has been reached",
  "errorCode": "too_many_requests"}`.

The `/__double__/` endpoints are the test's hand (Auth0's Dashboard): create the CLI's M2M app,
set the rate budget, inject a failure, read the state (never a secret). They need the control
token given on the command line.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import secrets
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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
_CLIENT_FIELDS = {
    "name", "description", "app_type", "grant_types", "token_endpoint_auth_method",
    "client_metadata", "is_first_party", "oidc_conformant", "jwt_configuration", "callbacks",
}  # fmt: skip


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


_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            409: "Conflict", 429: "Too Many Requests", 503: "Service Unavailable"}  # fmt: skip


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
            (g for g in self.grants.values()
             if g["client_id"] == client["client_id"] and g["audience"] == audience),
            None,
        )  # fmt: skip
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
        extra = sorted(set(body) - _CLIENT_FIELDS)
        if extra:
            raise ApiError(
                400,
                f"Payload validation error: 'Additional properties not allowed: {extra[0]}'.",
                "invalid_body",
            )
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(400, "Payload validation error: 'Missing required property: name'.",
                           "invalid_body")  # fmt: skip
        metadata = body.get("client_metadata", {})
        if not isinstance(metadata, dict) or not all(
            isinstance(v, str) and len(v) <= 255 for v in metadata.values()
        ):
            raise ApiError(400, "Payload validation error: 'client_metadata values must be "
                           "strings of at most 255 characters'.", "invalid_body")  # fmt: skip
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
        client = self.clients.get(client_id)
        if client is None:
            raise ApiError(404, "The client does not exist", "inexistent_client")
        return client

    def new_grant(self, body: dict[str, Any]) -> dict[str, Any]:
        client_id, audience, scope = body.get("client_id"), body.get("audience"), body.get("scope")
        if not isinstance(client_id, str) or not isinstance(audience, str) or not (
            isinstance(scope, list) and all(isinstance(s, str) for s in scope)
        ):
            raise ApiError(400, "Payload validation error: 'Missing required property: "
                           "client_id, audience or scope'.", "invalid_body")  # fmt: skip
        self.client(client_id)
        api = self.apis.get(audience)
        if api is None:
            raise ApiError(404, f"No resource server found with identifier {audience}",
                           "inexistent_resource_server")  # fmt: skip
        known = {s["value"] for s in api["scopes"]}
        unknown = [s for s in scope if s not in known]
        if unknown:
            raise ApiError(400, f"Client grant scopes not defined on the resource server: "
                           f"{', '.join(unknown)}", "invalid_body")  # fmt: skip
        if any(g["client_id"] == client_id and g["audience"] == audience
               for g in self.grants.values()):  # fmt: skip
            raise ApiError(409, "A client grant for this client and audience already exists",
                           "client_grant_conflict")  # fmt: skip
        grant = {"id": "cgr_" + secrets.token_hex(8), "client_id": client_id,
                 "audience": audience, "scope": list(scope)}  # fmt: skip
        self.grants[grant["id"]] = grant
        return grant


def _needs(scopes: set[str], *any_of: str) -> None:
    """403 unless the token has one of `any_of` [ERRORS]."""
    if not scopes.intersection(any_of):
        raise ApiError(403, f"Insufficient scope, expected any of: {','.join(any_of)}",
                       "insufficient_scope")  # fmt: skip


def _public(client: dict[str, Any], with_secret: bool) -> dict[str, Any]:
    return {k: v for k, v in client.items() if with_secret or k != "client_secret"}


class Handler(BaseHTTPRequestHandler):
    """One request; the tenant and control token live on the server object."""

    server: DoubleServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        # Method and path only: bodies (secrets) are never logged.
        print(f"{self.command} {urlsplit(self.path).path} -> {args[1] if len(args) > 1 else ''}",
              flush=True)  # fmt: skip

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> tuple[dict[str, Any], bool]:
        """(the parsed body, whether it was JSON); a form body's values become strings."""
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise ApiError(400, "Invalid request payload JSON format", "invalid_body") from None
            if not isinstance(body, dict):
                raise ApiError(400, "Payload validation error: 'Expected type object'.",
                               "invalid_body")  # fmt: skip
            return body, True
        form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True)
        return {k: v[0] for k, v in form.items()}, False

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, {k: v[0] for k, v in parse_qs(url.query).items()}
        tenant = self.server.tenant
        try:
            with tenant.lock:
                if path.startswith("/__double__/"):
                    self._control(method, path)
                elif path == "/oauth/token" and method == "POST":
                    self._token()
                elif path == "/.well-known/openid-configuration" and method == "GET":
                    self._send(200, self._discovery())
                elif path == "/.well-known/jwks.json" and method == "GET":
                    self._send(200, tenant.jwks())
                elif path.startswith("/api/v2/"):
                    self._management(method, path, query)
                else:
                    self._send(404, {"statusCode": 404, "error": "Not Found",
                                     "message": "Not Found"})  # fmt: skip
        except OAuthError as error:
            self._send(error.status, {"error": error.error,
                                      "error_description": error.description})  # fmt: skip

    def _discovery(self) -> dict[str, Any]:
        issuer = self.server.tenant.issuer  # [DISCOVERY]
        return {
            "issuer": issuer,
            "token_endpoint": issuer + "oauth/token",
            "jwks_uri": issuer + ".well-known/jwks.json",
            "authorization_endpoint": issuer + "authorize",
            "grant_types_supported": ["client_credentials", "authorization_code",
                                      "refresh_token"],  # fmt: skip
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],  # fmt: skip
            "id_token_signing_alg_values_supported": ["HS256", "RS256", "PS256"],
            "response_types_supported": ["code", "token", "id_token"],
            "subject_types_supported": ["public"],
        }

    def _token(self) -> None:
        tenant = self.server.tenant
        tenant.requests["token"] += 1
        try:
            body, _ = self._body()
        except ApiError:
            raise OAuthError(400, "invalid_request", "Invalid request payload") from None
        client_id, secret = body.get("client_id"), body.get("client_secret")
        basic = self.headers.get("Authorization", "")
        if basic.startswith("Basic "):  # client_secret_basic is accepted too
            try:
                pair = base64.b64decode(basic[6:]).decode()
                client_id, secret = (unquote(p) for p in pair.split(":", 1))
            except ValueError:
                raise OAuthError(401, "access_denied", "Unauthorized") from None
        if body.get("grant_type") != "client_credentials":
            raise OAuthError(403, "unsupported_grant_type",
                             f"Unsupported grant type: {body.get('grant_type')}")  # fmt: skip
        client = tenant.clients.get(str(client_id))
        if client is None or not hmac.compare_digest(
            str(secret or "").encode(), client["client_secret"].encode()
        ):
            raise OAuthError(401, "access_denied", "Unauthorized")
        if "client_credentials" not in client["grant_types"]:
            raise OAuthError(403, "unauthorized_client",
                             "Grant type 'client_credentials' not allowed for the client.")
        audience = body.get("audience")
        if not audience:
            raise OAuthError(403, "access_denied", "No audience parameter was provided, and "
                             "no default audience has been configured")  # fmt: skip
        asked = body.get("scope")
        self._send(200, tenant.issue(client, str(audience), str(asked) if asked else None))

    def _management(self, method: str, path: str, query: dict[str, str]) -> None:
        tenant = self.server.tenant
        allowed, limits = tenant.take()
        try:
            if not allowed:
                tenant.requests["limited"] += 1
                raise ApiError(429, "Global limit has been reached", "too_many_requests")
            tenant.requests["management"] += 1
            for failure in tenant.failures:
                if failure["method"] == method and path.startswith(failure["path"]):
                    failure["times"] -= 1
                    tenant.failures = [f for f in tenant.failures if f["times"] > 0]
                    raise ApiError(failure["status"], "Injected failure", "injected")
            scopes = tenant.scopes_of(self.headers.get("Authorization", ""))
            status, answer = self._route(method, path.removeprefix("/api/v2"), query, scopes)
            self._send(status, answer, limits)
        except ApiError as error:
            body = {"statusCode": error.status, "error": _REASONS.get(error.status, "Error"),
                    "message": error.message}  # fmt: skip
            if error.code:
                body["errorCode"] = error.code
            self._send(error.status, body, limits)

    def _route(
        self, method: str, path: str, query: dict[str, str], scopes: set[str]
    ) -> tuple[int, Any]:
        tenant = self.server.tenant
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[0] == "clients":
            if len(parts) == 1 and method == "POST":
                _needs(scopes, "create:clients")
                return 201, tenant.new_client(self._body()[0])
            if len(parts) == 1 and method == "GET":
                _needs(scopes, "read:clients")
                keys = "read:client_keys" in scopes
                return 200, [_public(c, keys) for c in tenant.clients.values()]
            client = tenant.client(parts[1])
            if len(parts) == 3 and parts[2] == "rotate-secret" and method == "POST":
                _needs(scopes, "update:client_keys")
                client["client_secret"] = secrets.token_urlsafe(48)
                return 200, client
            if len(parts) == 2 and method == "GET":
                _needs(scopes, "read:clients")
                return 200, _public(client, "read:client_keys" in scopes)
            if len(parts) == 2 and method == "PATCH":
                body = self._body()[0]
                _needs(scopes, "update:clients")
                if {"client_secret", "token_endpoint_auth_method"} & set(body):
                    _needs(scopes, "update:client_keys")
                extra = sorted(set(body) - _CLIENT_FIELDS - {"client_secret"})
                if extra:
                    raise ApiError(400, f"Payload validation error: 'Additional properties "
                                   f"not allowed: {extra[0]}'.", "invalid_body")  # fmt: skip
                client.update(body)
                return 200, _public(client, "read:client_keys" in scopes)
            if len(parts) == 2 and method == "DELETE":
                _needs(scopes, "delete:clients")
                del tenant.clients[client["client_id"]]
                tenant.grants = {k: g for k, g in tenant.grants.items()
                                 if g["client_id"] != client["client_id"]}  # fmt: skip
                return 204, None
        if parts[0] == "client-grants":
            if len(parts) == 1 and method == "POST":
                _needs(scopes, "create:client_grants")
                return 201, tenant.new_grant(self._body()[0])
            if len(parts) == 1 and method == "GET":
                _needs(scopes, "read:client_grants")
                return 200, [
                    g for g in tenant.grants.values()
                    if all(g[k] == query[k] for k in ("client_id", "audience") if k in query)
                ]  # fmt: skip
            grant = tenant.grants.get(parts[1]) if len(parts) == 2 else None
            if grant is None:
                raise ApiError(404, "The client grant does not exist", "inexistent_client_grant")
            if method == "DELETE":
                _needs(scopes, "delete:client_grants")
                del tenant.grants[grant["id"]]
                return 204, None
            if method == "PATCH":
                _needs(scopes, "update:client_grants")
                grant["scope"] = list(self._body()[0].get("scope", grant["scope"]))
                return 200, grant
        if parts[0] == "resource-servers" and method == "GET":
            _needs(scopes, "read:resource_servers")
            return 200, list(tenant.apis.values())
        raise ApiError(404, "Not Found")

    def _control(self, method: str, path: str) -> None:
        """The test's Dashboard: not part of Auth0."""
        given = self.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, self.server.control_token.encode()):
            self._send(401, {"error": "control token required"})
            return
        tenant = self.server.tenant
        body = self._body()[0] if method == "POST" else {}
        if path == "/__double__/m2m":
            client = tenant.new_client({
                "name": body.get("name", "parkctl"), "app_type": "non_interactive",
                "grant_types": ["client_credentials"],
            })  # fmt: skip
            tenant.new_grant({"client_id": client["client_id"],
                              "audience": body.get("audience", tenant.management_audience),
                              "scope": body.get("scopes", list(MANAGEMENT_SCOPES))})  # fmt: skip
            self._send(201, {"client_id": client["client_id"],
                             "client_secret": client["client_secret"]})  # fmt: skip
        elif path == "/__double__/rate-limit":
            tenant.rate_limit = int(body["limit"])
            tenant.rate_window_s = float(body.get("window_s", 1.0))
            tenant.bucket_until = 0.0
            self._send(200, {"limit": tenant.rate_limit, "window_s": tenant.rate_window_s})
        elif path == "/__double__/fail":
            tenant.failures.append({"method": body["method"], "path": body["path"],
                                    "status": int(body.get("status", 503)),
                                    "times": int(body.get("times", 1))})  # fmt: skip
            self._send(200, {"failures": len(tenant.failures)})
        elif path == "/__double__/state":
            self._send(200, {
                "clients": [_public(c, False) for c in tenant.clients.values()],
                "grants": list(tenant.grants.values()),
                "requests": tenant.requests,
            })  # fmt: skip
        else:
            self._send(404, {"error": "no such control"})


class DoubleServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, tenant: Tenant, control_token: str) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.tenant, self.control_token = tenant, control_token


def main() -> None:
    """`python -m tools.harness.auth0double_app --port P --cert C --key K ...` (the launcher)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host-name", default="localhost")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ingest-audience", required=True)
    parser.add_argument("--control-token-file", required=True)
    a = parser.parse_args()
    with open(a.control_token_file, encoding="utf-8") as f:
        control = f.read().strip()
    tenant = Tenant(f"https://{a.host_name}:{a.port}", a.ingest_audience)
    server = DoubleServer(a.port, tenant, control)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(a.cert, a.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"Auth0 double for {tenant.issuer} on 127.0.0.1:{a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
