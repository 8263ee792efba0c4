"""Boards as clients of an RFC 7591 server (Keycloak, Ory Hydra, node-oidc-provider...).

The registration endpoint comes from the issuer's metadata (`/.well-known/openid-configuration`,
else RFC 8414 `/.well-known/oauth-authorization-server`); an initial access token, where the
server asks for one, from `PARK_IDP_INITIAL_TOKEN` or `PARK_IDP_INITIAL_TOKEN_FILE`. Each board
registers with only the client-credentials grant, HTTP Basic authentication (what the agent
sends) and `scope` `counts:write`; the board asks for the ingest API with RFC 8707 `resource`
and for that scope (such servers grant no scope unless asked, RFC 6749 §3.3).

Management is RFC 7592: GET/PUT/DELETE on `registration_client_uri` with the client's
registration access token. That token is a credential for the operator's tool, not for the
service (which never manages clients), so parkctl keeps it, sealed (`parkctl.idp.sealed`): a
leak of parkfleet's database therefore hands nobody control of the boards' clients.
RFC 7592 has no "disabled" state: disabling in parkfleet (refused within 1 s) is the switch;
`delete` deletes the registration too, and `rotate-secret` is a PUT, which servers may answer
with a new secret (RFC 7592 §2.2) or, like node-oidc-provider, with the same one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.api.lean_httpx import httpx
from provisioning.parkctl.idp.base import WRITE_SCOPE, ExternalClient, secret_from
from provisioning.parkctl.idp.http import IdpHttp, check_url, error_text
from provisioning.parkctl.idp.sealed import RegistrationStore


class DcrServer:
    """An RFC 7591/7592 authorization server at `issuer`; see the module docstring."""

    def __init__(self, issuer: str, initial_token: str | None) -> None:
        self.issuer = check_url(issuer, "--idp issuer")
        self._initial = initial_token
        self._http = IdpHttp(issuer)
        self._store = RegistrationStore()
        self._metadata = self._discover()
        self.token_url = check_url(str(self._metadata["token_endpoint"]), "token_endpoint")
        endpoint = self._metadata.get("registration_endpoint")
        if not isinstance(endpoint, str):
            raise ParkctlError(f"{issuer} offers no RFC 7591 registration_endpoint")
        self.registration_endpoint = check_url(endpoint, "registration_endpoint")

    @classmethod
    def from_environment(cls, issuer: str) -> DcrServer:
        token = secret_from("PARK_IDP_INITIAL_TOKEN", "PARK_IDP_INITIAL_TOKEN_FILE", "token")
        return cls(issuer, token)

    def close(self) -> None:
        self._http.close()

    def _discover(self) -> dict[str, Any]:
        parts = urlsplit(self.issuer)
        origin, path = f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")
        for url in (
            f"{origin}{path}/.well-known/openid-configuration",
            f"{origin}/.well-known/oauth-authorization-server{path}",  # RFC 8414 §3
        ):
            response = self._http.request("GET", url)
            if response.status_code != 200:
                continue
            try:
                metadata = response.json()
            except ValueError:
                continue
            if isinstance(metadata, dict) and metadata.get("issuer") == self.issuer:
                return metadata
            raise ParkctlError(
                f"{url} names issuer {metadata.get('issuer')!r}, not {self.issuer!r}: give "
                "--idp exactly as the server spells its issuer"
            )
        raise ParkctlError(f"{self.issuer} publishes no OpenID or RFC 8414 metadata")

    def board_config(self, audience: str) -> dict[str, Any]:
        return {
            "token_url": self.token_url,
            "audience": audience,
            "token_audience_param": "resource",
            "token_scope": WRITE_SCOPE,
        }

    def create_client(self, name: str, mac: str | None, audience: str) -> ExternalClient:
        headers = {"Authorization": f"Bearer {self._initial}"} if self._initial else {}
        response = self._http.request(
            "POST",
            self.registration_endpoint,
            headers=headers,
            json={
                "client_name": name,
                "grant_types": ["client_credentials"],
                "response_types": [],
                "redirect_uris": [],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": WRITE_SCOPE,
            },
        )
        if response.status_code != 201:
            hint = "" if self._initial else " (set PARK_IDP_INITIAL_TOKEN if it needs one)"
            raise ParkctlError(
                f"{self.issuer} refused the registration: {error_text(response)}{hint}"
            )
        body = response.json()
        client = ExternalClient(str(body["client_id"]), SecretStr(str(body["client_secret"])))
        token, uri = body.get("registration_access_token"), body.get("registration_client_uri")
        if isinstance(token, str) and isinstance(uri, str):
            self._store.put(
                self.issuer, client.client_id, token, check_url(uri, "registration URI")
            )
        return client

    def _manage(self, client_id: str, method: str, body: Any = None) -> httpx.Response | None:
        """An RFC 7592 call; None when parkctl holds no registration token for the client."""
        entry = self._store.get(self.issuer, client_id)
        if entry is None:
            return None
        return self._http.request(
            method,
            entry["registration_client_uri"],
            json=body,
            headers={"Authorization": f"Bearer {entry['registration_access_token']}"},
        )

    def fresh_secret(self, client_id: str) -> SecretStr | None:
        current = self._manage(client_id, "GET")
        if current is None:
            raise ParkctlError(
                f"no registration access token for {client_id} in {self._store.path}: "
                "re-register the board (delete it, then provision again)"
            )
        if current.status_code in (401, 404):  # RFC 7592 §2.1: gone (or the token with it)
            return None
        if current.status_code != 200:
            raise ParkctlError(f"{self.issuer}: reading {client_id}: {error_text(current)}")
        metadata = {
            k: v
            for k, v in current.json().items()
            if k
            not in (
                "registration_access_token",
                "registration_client_uri",
                "client_secret_expires_at",
                "client_id_issued_at",
                "client_secret",
            )
        }
        updated = self._manage(client_id, "PUT", {**metadata, "client_id": client_id})
        if updated is None or updated.status_code != 200:
            why = error_text(updated) if updated is not None else "no token"
            raise ParkctlError(f"{self.issuer}: updating {client_id}: {why}")
        body = updated.json()
        if isinstance(body.get("registration_access_token"), str):  # a rotated one
            entry = self._store.get(self.issuer, client_id) or {}
            self._store.put(
                self.issuer,
                client_id,
                body["registration_access_token"],
                entry.get("registration_client_uri", ""),
            )
        secret = body.get("client_secret") or current.json().get("client_secret")
        if not isinstance(secret, str):
            raise ParkctlError(f"{self.issuer} returns no client_secret for {client_id}")
        return SecretStr(secret)

    def set_enabled(self, client_id: str, enabled: bool, audience: str) -> None:
        """Nothing at the server: RFC 7592 has no disabled state (see the module docstring)."""

    def delete_client(self, client_id: str) -> bool:
        response = self._manage(client_id, "DELETE")
        if response is None:
            raise ParkctlError(
                f"no registration access token for {client_id} in {self._store.path}: "
                f"delete the client in {self.issuer}'s console"
            )
        if response.status_code in (401, 404):
            self._store.put(self.issuer, client_id, None)
            return False
        if response.status_code != 204:
            raise ParkctlError(f"{self.issuer}: deleting {client_id}: {error_text(response)}")
        self._store.put(self.issuer, client_id, None)
        return True
