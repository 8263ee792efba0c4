"""Sign-in as a backend-for-frontend: the service exchanges an operator's client ID and secret
at its own token endpoint (in process, through the real endpoint: same client authentication,
per-client failure limit and issuance audit as any client) and keeps the tokens in a
server-side session.

The exchange carries the browser's address (`SIGN_IN_SOURCE`, auth/failures.py), so failures
are audited with it and spend no other address's bucket (the in-process request would otherwise
come from 127.0.0.1, the bucket every local token client shares). Sign-ins have their own limit
per browser address instead: `SignInLimit`, failed sign-ins only, the same shape as the token
endpoint's per-source failures. A sign-in is not an issuance to the operator: it takes nothing
from the operator's issuance bucket.

An admin gets two tokens: `parkfleet-ingest` (counts:read, for the pages) and `parkfleet-admin`
(devices:admin, for the actions). A viewer's admin request is refused (`invalid_target`), so its
session has no admin token and the server refuses every action for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from provisioning.common.scopes import ADMIN_AUDIENCE, COUNTS_READ, INGEST_AUDIENCE
from provisioning.service.auth.failures import SIGN_IN_SOURCE
from provisioning.service.auth.ratelimit import TokenBuckets
from provisioning.service.config import Settings
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


def _from_browser(app: ASGIApp, address: str) -> ASGIApp:
    """`app`, called as the browser at `address` signing in (never set by a network request)."""

    async def call(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "client": (address, 0), SIGN_IN_SOURCE: address}, receive, send)

    return call


# Successful sign-ins per operator: not issuances, but each writes a session and two audited
# token issuances, so whoever holds a secret cannot grow either without bound.
SIGN_INS_BURST = 30
SIGN_INS_PER_HOUR = 60.0


class SignInLimit:
    """Failed sign-ins per browser address (token buckets): once spent, that address's sign-ins
    are refused (429) before any credential is looked at; other addresses are unaffected. And
    successful sign-ins per operator (`SIGN_INS_BURST`, refilled `SIGN_INS_PER_HOUR`), apart
    from the operator's issuance bucket."""

    def __init__(self, settings: Settings) -> None:
        self.failures = TokenBuckets(
            settings.auth_fail_source_burst, settings.auth_fail_source_per_hour
        )
        self.successes = TokenBuckets(SIGN_INS_BURST, SIGN_INS_PER_HOUR)

    async def sign_in(self, app: ASGIApp, address: str, client_id: str, secret: str) -> Session:
        """Credentials from the browser at `address` -> a session, or `SignInRefused`."""
        # Checked, not taken, before the exchange: only a sign-in that succeeds spends one.
        wait = self.failures.wait_time(address) or self.successes.wait_time(client_id)
        if wait:
            seconds = int(wait) + 1
            raise SignInRefused(
                f"Too many sign-in attempts. Try again in {seconds} s.", 429, seconds
            )
        transport = httpx.ASGITransport(app=_from_browser(app, address))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://parkfleet.internal"
        ) as http:
            try:
                session = await exchange(http, client_id, secret)
            except SignInRefused as error:
                if error.status in (400, 401, 403):
                    self.failures.take(address)
                raise
        self.successes.take(client_id)
        return session


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
