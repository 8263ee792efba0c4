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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tools.harness.auth0double_tenant import (
    CLIENT_FIELDS,
    MANAGEMENT_SCOPES,
    REASONS,
    ApiError,
    OAuthError,
    Tenant,
    needs,
    public,
)


class Handler(BaseHTTPRequestHandler):
    """One request; the tenant and control token live on the server object."""

    server: DoubleServer
    protocol_version = "HTTP/1.1"
    _raw = b""  # the request body, read once by _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        # Method and path only: bodies (secrets) are never logged.
        print(
            f"{self.command} {urlsplit(self.path).path} -> {args[1] if len(args) > 1 else ''}",
            flush=True,
        )

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
        raw = self._raw
        kind = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind == "application/json":
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                raise ApiError(400, "Invalid request payload JSON format", "invalid_body") from None
            if not isinstance(body, dict):
                raise ApiError(
                    400, "Payload validation error: 'Expected type object'.", "invalid_body"
                )
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
        # The whole body is read first: an answer given before reading it (a 429) would leave
        # it on the kept-alive connection as the start of the next request.
        self._raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
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
                    self._send(
                        404, {"statusCode": 404, "error": "Not Found", "message": "Not Found"}
                    )
        except OAuthError as error:
            self._send(error.status, {"error": error.error, "error_description": error.description})

    def _discovery(self) -> dict[str, Any]:
        issuer = self.server.tenant.issuer  # [DISCOVERY]
        return {
            "issuer": issuer,
            "token_endpoint": issuer + "oauth/token",
            "jwks_uri": issuer + ".well-known/jwks.json",
            "authorization_endpoint": issuer + "authorize",
            "grant_types_supported": [
                "client_credentials",
                "authorization_code",
                "refresh_token",
            ],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
            ],
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
        method = "client_secret_post"
        if basic.startswith("Basic "):
            method = "client_secret_basic"
            try:
                pair = base64.b64decode(basic[6:]).decode()
                client_id, secret = (unquote(p) for p in pair.split(":", 1))
            except ValueError:
                raise OAuthError(401, "access_denied", "Unauthorized") from None
        if body.get("grant_type") != "client_credentials":
            raise OAuthError(
                403, "unsupported_grant_type", f"Unsupported grant type: {body.get('grant_type')}"
            )
        client = tenant.clients.get(str(client_id))
        if client is None or not hmac.compare_digest(
            str(secret or "").encode(), client["client_secret"].encode()
        ):
            raise OAuthError(401, "access_denied", "Unauthorized")
        # The application's authentication method is enforced (Application Credentials,
        # https://auth0.com/docs/secure/application-credentials).
        if client["token_endpoint_auth_method"] != method:
            raise OAuthError(401, "access_denied", "Unauthorized")
        if "client_credentials" not in client["grant_types"]:
            raise OAuthError(
                403,
                "unauthorized_client",
                "Grant type 'client_credentials' not allowed for the client.",
            )
        audience = body.get("audience")
        if not audience:
            raise OAuthError(
                403,
                "access_denied",
                "No audience parameter was provided, and no default audience has been configured",
            )
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
            body = {
                "statusCode": error.status,
                "error": REASONS.get(error.status, "Error"),
                "message": error.message,
            }
            if error.code:
                body["errorCode"] = error.code
            self._send(error.status, body, limits)

    def _route(
        self, method: str, path: str, query: dict[str, str], scopes: set[str]
    ) -> tuple[int, Any]:
        """One endpoint of [CLIENTS] and [GRANTS]: a case per documented page. Where the path names
        a client or grant, an unknown one is a 404 before the scope is checked."""
        tenant = self.server.tenant
        match [method, *(unquote(p) for p in path.strip("/").split("/"))]:
            case ["POST", "clients"]:
                needs(scopes, "create:clients")
                return 201, tenant.new_client(self._body()[0])
            case ["GET", "clients"]:
                needs(scopes, "read:clients")
                keys = "read:client_keys" in scopes
                return 200, [public(c, keys) for c in tenant.clients.values()]
            case ["POST", "clients", client_id, "rotate-secret"]:
                client = tenant.client(client_id)
                needs(scopes, "update:client_keys")
                client["client_secret"] = secrets.token_urlsafe(48)
                return 200, client
            case ["GET", "clients", client_id]:
                client = tenant.client(client_id)
                needs(scopes, "read:clients")
                return 200, public(client, "read:client_keys" in scopes)
            case ["PATCH", "clients", client_id]:
                client = tenant.client(client_id)
                body = self._body()[0]
                needs(scopes, "update:clients")
                if {"client_secret", "token_endpoint_auth_method"} & set(body):
                    needs(scopes, "update:client_keys")
                extra = sorted(set(body) - CLIENT_FIELDS - {"client_secret"})
                if extra:
                    raise ApiError(
                        400,
                        f"Payload validation error: 'Additional properties "
                        f"not allowed: {extra[0]}'.",
                        "invalid_body",
                    )
                client.update(body)
                return 200, public(client, "read:client_keys" in scopes)
            case ["DELETE", "clients", client_id]:
                client = tenant.client(client_id)
                needs(scopes, "delete:clients")
                del tenant.clients[client["client_id"]]
                tenant.grants = {
                    k: g for k, g in tenant.grants.items() if g["client_id"] != client["client_id"]
                }
                return 204, None
            case ["POST", "client-grants"]:
                needs(scopes, "create:client_grants")
                return 201, tenant.new_grant(self._body()[0])
            case ["GET", "client-grants"]:
                needs(scopes, "read:client_grants")
                return 200, [
                    g
                    for g in tenant.grants.values()
                    if all(g[k] == query[k] for k in ("client_id", "audience") if k in query)
                ]
            case ["DELETE", "client-grants", grant_id]:
                grant = tenant.grant(grant_id)
                needs(scopes, "delete:client_grants")
                del tenant.grants[grant["id"]]
                return 204, None
            case ["PATCH", "client-grants", grant_id]:
                grant = tenant.grant(grant_id)
                needs(scopes, "update:client_grants")
                grant["scope"] = list(self._body()[0].get("scope", grant["scope"]))
                return 200, grant
            case ["GET", "resource-servers"]:
                needs(scopes, "read:resource_servers")
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
            client = tenant.new_client(
                {
                    "name": body.get("name", "parkctl"),
                    "app_type": "non_interactive",
                    "grant_types": ["client_credentials"],
                }
            )
            tenant.new_grant(
                {
                    "client_id": client["client_id"],
                    "audience": body.get("audience", tenant.management_audience),
                    "scope": body.get("scopes", list(MANAGEMENT_SCOPES)),
                }
            )
            self._send(
                201, {"client_id": client["client_id"], "client_secret": client["client_secret"]}
            )
        elif path == "/__double__/rate-limit":
            tenant.rate_limit = int(body["limit"])
            tenant.rate_window_s = float(body.get("window_s", 1.0))
            tenant.bucket_until = 0.0
            self._send(200, {"limit": tenant.rate_limit, "window_s": tenant.rate_window_s})
        elif path == "/__double__/fail":
            tenant.failures.append(
                {
                    "method": body["method"],
                    "path": body["path"],
                    "status": int(body.get("status", 503)),
                    "times": int(body.get("times", 1)),
                }
            )
            self._send(200, {"failures": len(tenant.failures)})
        elif path == "/__double__/state":
            self._send(
                200,
                {
                    "clients": [public(c, False) for c in tenant.clients.values()],
                    "grants": list(tenant.grants.values()),
                    "requests": tenant.requests,
                },
            )
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
