"""Sign-in as a backend-for-frontend: the service exchanges an operator's client ID and secret
at its own token endpoint (in process, through the real endpoint: same client authentication,
rate limits and issuance audit as any client) and keeps the tokens in a server-side session.

An admin gets two tokens: `parkfleet-ingest` (counts:read, for the pages) and `parkfleet-admin`
(devices:admin, for the actions). A viewer's admin request is refused (`invalid_target`), so its
session has no admin token and the server refuses every action for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from provisioning.service.auth.scopes import ADMIN_AUDIENCE, COUNTS_READ, INGEST_AUDIENCE
from provisioning.service.ui.session import Session


class SignInRefused(Exception):
    """Why a sign-in failed, in words for the login page; `status` for the response."""

    def __init__(self, message: str, status: int = 401, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Token:
    value: str
    expires_at: float
    scope: str


async def _token(
    http: httpx.AsyncClient, client_id: str, secret: str, audience: str
) -> _Token | None:
    """A token for `audience`, None if the client may not have one; `SignInRefused` else."""
    asked = time.time()
    response = await http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "audience": audience},
        auth=(client_id, secret),
    )
    if response.status_code == 200:
        body = response.json()
        return _Token(body["access_token"], asked + float(body["expires_in"]), body["scope"])
    error = response.json().get("error") if response.content else None
    if response.status_code == 429:
        wait = int(float(response.headers.get("retry-after", "60")))
        raise SignInRefused(f"Too many sign-in attempts. Try again in {wait} s.", 429, wait)
    if error in ("invalid_target", "invalid_scope"):
        return None
    if error == "invalid_client":
        raise SignInRefused("Wrong client ID or secret, or the operator is disabled.")
    raise SignInRefused("The token endpoint refused the sign-in.", 502)


async def exchange(http: httpx.AsyncClient, client_id: str, secret: str) -> Session:
    """Credentials -> a session holding the operator's tokens (never the secret)."""
    if not client_id or not secret or len(client_id) > 256 or len(secret) > 256:
        raise SignInRefused("Enter an operator client ID and secret.", 400)
    read = await _token(http, client_id, secret, INGEST_AUDIENCE)
    if read is None or COUNTS_READ not in read.scope.split():
        # A board's credentials get counts:write only: not a dashboard user.
        raise SignInRefused("This client is not an operator.", 403)
    admin = await _token(http, client_id, secret, ADMIN_AUDIENCE)
    expires_at = min(read.expires_at, admin.expires_at) if admin else read.expires_at
    return Session(
        client_id=client_id,
        role="admin" if admin else "viewer",
        read_token=read.value,
        admin_token=admin.value if admin else None,
        expires_at=expires_at,
    )
