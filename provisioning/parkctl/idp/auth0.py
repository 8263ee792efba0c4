"""Boards as Auth0 machine-to-machine applications, over the Management API v2.

parkctl is itself an M2M application of the tenant (its credentials in `PARK_IDP_CLIENT_ID` and
`PARK_IDP_CLIENT_SECRET`, or `PARK_IDP_CLIENT_SECRET_FILE`), authorized for the Management API
with create/read/update/delete:clients, update:client_keys, create/read/delete:client_grants. Its
Management API token comes by client credentials and is cached on disk (0600) like the operator
token, so a fleet run costs one token (Auth0 counts M2M tokens per month).

Per board: `POST /api/v2/clients` (a non-interactive app with only the client-credentials grant,
authenticating by `client_secret_post`: the agent sends Auth0's documented JSON body with the
credentials in it), then `POST /api/v2/client-grants` for the ingest API with exactly
`counts:write`. Auth0 has no "disabled" flag on an application, so disabling a board here
removes its client grant (no new tokens for the ingest API; tokens it holds keep their lifetime,
which is why parkfleet's own disable, effective within 1 s, comes
first) and enabling creates it again.

The SDK (`auth0-python`, 6.8.0 read and measured) is not used: its HTTP client retries every
5xx, 408, 409 and 429 for any method (`management/core/http_client.py`, `_should_retry`), so a
5xx after Auth0 made a board's application is answered by a second `POST /api/v2/clients`, a
second application for one board; its token provider keeps the Management API token in memory
only (one token per parkctl run, where Auth0 counts M2M tokens per month) and fetches it with a
default `httpx.Client()` that ignores a private CA; and it installs 54 MB (its `auth0/` tree)
plus aiohttp, requests and urllib3. These five endpoints are a few lines each on the connection
`parkctl.idp.http` rate-limits (a 429 waits for `x-ratelimit-reset`, nothing else is retried).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.api.lean_httpx import httpx
from provisioning.parkctl.api.tokens import EXPIRY_MARGIN_S, TokenCache
from provisioning.parkctl.idp.base import WRITE_SCOPE, ExternalClient, secret_from
from provisioning.parkctl.idp.http import IdpHttp, error_text


class Auth0Tenant:
    """One Auth0 tenant (`domain` is `HOST[:PORT]`); see the module docstring."""

    def __init__(self, domain: str, client_id: str, client_secret: str) -> None:
        self.domain = domain
        self.origin = f"https://{domain}"
        self.issuer = self.origin + "/"  # Auth0's `iss` ends with a slash
        self.management_audience = self.origin + "/api/v2/"
        self._client_id = client_id
        self._secret = client_secret
        self._http = IdpHttp(self.origin)
        self._cache = TokenCache()
        self._cache_key = f"{self.origin} {client_id} {self.management_audience}"
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, domain: str) -> Auth0Tenant:
        """The tenant with parkctl's M2M credentials from the environment (or a file)."""
        if not domain or "/" in domain:
            raise ParkctlError(f"auth0://{domain}: give the tenant's domain, auth0://HOST[:PORT]")
        client_id = os.environ.get("PARK_IDP_CLIENT_ID")
        secret = secret_from("PARK_IDP_CLIENT_SECRET", "PARK_IDP_CLIENT_SECRET_FILE", "secret")
        if not client_id or not secret:
            raise ParkctlError(
                "Auth0 credentials missing: set PARK_IDP_CLIENT_ID and PARK_IDP_CLIENT_SECRET "
                "(or PARK_IDP_CLIENT_SECRET_FILE) to parkctl's M2M application of the tenant"
            )
        return cls(domain, client_id, secret)

    def close(self) -> None:
        self._http.close()

    def board_config(self, audience: str) -> dict[str, Any]:
        # Auth0's examples post JSON; `audience` is Auth0's own parameter (the agent's default).
        return {
            "token_url": self.origin + "/oauth/token",
            "audience": audience,
            "token_body": "json",
        }

    # --- the Management API token ---

    def _token(self, fresh: bool) -> str:
        with self._lock:  # a fleet run's threads share one token, fetched once
            if not fresh and (cached := self._cache.get(self._cache_key)) is not None:
                return cached[0]
            return self._fetch_token()

    def _fetch_token(self) -> str:
        asked_at = time.time()
        response = self._http.request(
            "POST",
            self.origin + "/oauth/token",
            json={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._secret,
                "audience": self.management_audience,
            },
        )
        if response.status_code != 200:
            raise ParkctlError(
                f"Auth0 refused parkctl's Management API token ({error_text(response)}); check "
                "PARK_IDP_CLIENT_ID/PARK_IDP_CLIENT_SECRET and that the application is "
                "authorized for the Management API"
            )
        try:
            body = response.json()
            token, expires_in = str(body["access_token"]), float(body["expires_in"])
        except (ValueError, KeyError, TypeError):
            raise ParkctlError(f"{self.domain}/oauth/token sent an unusable answer") from None
        use_until = asked_at + expires_in - min(EXPIRY_MARGIN_S, expires_in / 2)
        self._cache.put(self._cache_key, token, use_until)
        return token

    def _call(self, method: str, path: str, body: Any = None, **query: str) -> httpx.Response:
        """A Management API call; one new token on a 401 (expired, or the key rotated)."""
        for fresh in (False, True):
            response = self._http.request(
                method,
                f"{self.origin}/api/v2/{path}",
                json=body,
                params=query or None,
                headers={"Authorization": f"Bearer {self._token(fresh)}"},
            )
            if response.status_code != 401:
                break
        if response.status_code == 403:
            raise ParkctlError(
                f"Auth0 refused {method} /api/v2/{path}: {error_text(response)} (give parkctl's "
                "application that Management API permission)"
            )
        return response

    def _ok(self, response: httpx.Response, what: str) -> Any:
        if response.status_code >= 400:
            raise ParkctlError(f"Auth0 could not {what}: {error_text(response)}")
        return response.json() if response.content else None

    # --- boards ---

    def create_client(self, name: str, mac: str | None, audience: str) -> ExternalClient:
        created = self._ok(
            self._call(
                "POST",
                "clients",
                {
                    "name": name,
                    "description": "parkfleet board",
                    "app_type": "non_interactive",
                    "grant_types": ["client_credentials"],
                    # The agent's JSON body carries the credentials (Auth0's documented
                    # request), so the application authenticates by client_secret_post.
                    "token_endpoint_auth_method": "client_secret_post",
                    "client_metadata": {"parkfleet_mac": mac or ""},
                },
            ),
            f"create the application for {name}",
        )
        client = ExternalClient(str(created["client_id"]), SecretStr(str(created["client_secret"])))
        try:
            self._grant(client.client_id, audience)
        except ParkctlError:
            self.delete_client(client.client_id)  # no application left without its grant
            raise
        return client

    def _grant(self, client_id: str, audience: str) -> None:
        response = self._call(
            "POST",
            "client-grants",
            {"client_id": client_id, "audience": audience, "scope": [WRITE_SCOPE]},
        )
        if response.status_code == 409:  # granted already (a re-run)
            return
        self._ok(response, f"grant {WRITE_SCOPE} on {audience}")

    def fresh_secret(self, client_id: str) -> SecretStr | None:
        response = self._call("POST", f"clients/{quote(client_id, safe='')}/rotate-secret")
        if response.status_code == 404:
            return None
        return SecretStr(str(self._ok(response, "rotate the secret")["client_secret"]))

    def set_enabled(self, client_id: str, enabled: bool, audience: str) -> None:
        if enabled:
            self._grant(client_id, audience)
            return
        grants = self._ok(
            self._call("GET", "client-grants", client_id=client_id, audience=audience),
            "list the client grants",
        )
        for grant in grants or []:
            response = self._call("DELETE", f"client-grants/{quote(str(grant['id']), safe='')}")
            if response.status_code != 404:
                self._ok(response, "remove the client grant")

    def delete_client(self, client_id: str) -> bool:
        response = self._call("DELETE", f"clients/{quote(client_id, safe='')}")
        if response.status_code == 404:
            return False
        self._ok(response, f"delete application {client_id}")
        return True
