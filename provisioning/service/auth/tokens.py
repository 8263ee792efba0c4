"""The client credentials grant (RFC 6749 §4.4) and JWT access tokens (RFC 9068).

`parse_params` parses a token or introspection request body strictly; `ClientCredentialsGrant`
validates the request (`validate_token_request`), states the token's claims (`claims`: the
audit record is written from them before anything is signed) and signs them (`sign`).
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

from sqlalchemy import Engine

from provisioning.common.scopes import DEVICE
from provisioning.common.text import is_clean_text
from provisioning.service.auth import scopes
from provisioning.service.auth.clients import ClientRecord
from provisioning.service.auth.errors import (
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    TemporarilyUnavailable,
    TooManyRequests,
    UnsupportedGrantType,
)
from provisioning.service.auth.keys import KeyStore
from provisioning.service.auth.ratelimit import SharedBuckets, TokenBuckets
from provisioning.service.web.body import MalformedJson, strict_json
from provisioning.store import audit, sql
from provisioning.store.db import DATABASE_ERRORS, unavailable
from provisioning.store.groupcommit import GroupCommit

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024  # a token request is a few hundred bytes
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
GRANT_TYPE = "client_credentials"


def _media_type(content_type: str | None) -> str:
    if not content_type:
        raise InvalidRequest(f"Content-Type must be {FORM} or {JSON}")
    media, *params = (part.strip() for part in content_type.split(";"))
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise InvalidRequest("only UTF-8 bodies are accepted")
    media = media.lower()
    if media not in (FORM, JSON):
        raise InvalidRequest(f"Content-Type must be {FORM} or {JSON}")
    return media


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in pairs:
        if name in params:
            # RFC 6749 §3.2: request parameters must not be included more than once.
            raise InvalidRequest(f"parameter {name} repeated")
        params[name] = value
    return params


def _form_pairs(text: str) -> list[tuple[str, str]]:
    # A body with nothing to unquote (the usual token request: IDs and secrets are URL-safe)
    # is split directly, as `parse_qsl` would split it, at a third of its cost (measured).
    if text and "%" not in text and "+" not in text:
        pairs = []
        for field in text.split("&"):
            name, eq, value = field.partition("=")
            if not eq:
                raise InvalidRequest("malformed form body")
            pairs.append((name, value))
        return pairs
    try:
        return parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text), errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("malformed form body") from None


def parse_params(content_type: str | None, body: bytes) -> dict[str, str]:
    """Form or JSON body -> parameters; empty values count as absent (RFC 6749 §3.2).

    Anything malformed (bad UTF-8, bad percent-encoding, repeated or non-string parameters,
    lone surrogates or NUL, JSON that is not an object or nested too deep) is
    `invalid_request`.
    """
    media = _media_type(content_type)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("body is not UTF-8") from None
    raw: dict[str, Any]
    if media == FORM:
        raw = _no_repeats(_form_pairs(text))
    else:
        try:
            loaded = strict_json(body)
        except MalformedJson as error:
            raise InvalidRequest(f"malformed JSON body: {error}") from None
        if not isinstance(loaded, dict):
            raise InvalidRequest("JSON body must be an object")
        raw = loaded
    params: dict[str, str] = {}
    for name, value in raw.items():
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise InvalidRequest(f"parameter {name} must be a string")
        if not (is_clean_text(name) and is_clean_text(value)):
            raise InvalidRequest("parameters must be UTF-8 text without NUL")
        params[name] = value
    return params


def check_grant_type(params: dict[str, str]) -> None:
    """RFC 6749 §4.4.2: `grant_type=client_credentials`, nothing else."""
    grant_type = params.pop("grant_type", None)
    if grant_type is None:
        raise InvalidRequest("grant_type is required")
    if grant_type != GRANT_TYPE:
        raise UnsupportedGrantType("only client_credentials is supported")


class IssuanceAudit(GroupCommit[tuple[str, dict[str, Any], bool], None]):
    """Token issuance audit events, group-committed (store/groupcommit.py) before the tokens are
    signed and handed out: no token leaves the server unaudited, even if the process is killed
    the next instant. If the write fails, every token of the group is withheld (503) instead of
    being issued unrecorded.

    With `buckets` (PostgreSQL: shared by every instance) the group's issuance tokens are taken
    in the same transaction, one statement for the group: a request whose client's bucket is
    empty is refused (429) and writes nothing, and a failed commit gives the tokens back.
    """

    in_thread = True  # the commit's wait (fsync, round trip) overlaps the next requests' work

    def __init__(self, engine: Engine, buckets: SharedBuckets | None = None) -> None:
        super().__init__()
        # The one writer thread keeps its connection and writes on the driver directly: a pool
        # checkout (pre-ping, reset) and SQLAlchemy's Session and compiled statements cost more
        # round trips and CPU per group than the group's own two statements (measured).
        self._held = sql.HeldConnection(engine)
        self._buckets = buckets

    async def record(self, client_id: str, detail: dict[str, Any], limited: bool = True) -> None:
        """Write a `token.issue` event (never the token itself); returns once it is committed.
        `limited` False: takes nothing from the shared bucket (a dashboard sign-in)."""
        await self.submit((client_id, detail, limited))

    def write(self, items: list[tuple[str, dict[str, Any], bool]]) -> list[Exception | None]:
        def group(tx: sql.Tx) -> list[Exception | None]:
            outcomes: list[Exception | None] = [None] * len(items)
            limited = [i for i, item in enumerate(items) if item[2]]
            if self._buckets is not None and limited:
                waits = self._buckets.take_many(tx, [items[i][0] for i in limited])
                for i, wait in zip(limited, waits, strict=True):
                    outcomes[i] = TooManyRequests(wait) if wait else None
            audit.insert_many(
                tx,
                [
                    (cid, "token.issue", cid, detail)
                    for (cid, detail, _), outcome in zip(items, outcomes, strict=True)
                    if outcome is None
                ],
            )
            return outcomes

        try:
            return self._held.run(group)
        except DATABASE_ERRORS as error:
            if unavailable(error):
                log.warning("writing %d token issuance audit events: %s", len(items), error)
            else:
                log.exception("writing %d token issuance audit events failed", len(items))
            raise

    def refusal(self, error: Exception) -> Exception:
        if isinstance(error, DATABASE_ERRORS):
            return TemporarilyUnavailable("cannot record the issuance now")
        return error

    def close(self) -> None:
        """Write what is waiting (called on shutdown) and give the connection back."""
        self.shutdown()
        self._held.close()


class ClientCredentialsGrant:
    """Issues ES256 access tokens to authenticated clients (RFC 6749 §4.4, RFC 9068)."""

    def __init__(
        self, keys: KeyStore, issuer: str, ttl_s: int, buckets: TokenBuckets | None
    ) -> None:
        # buckets None: the issuance limit is taken with the audit record (IssuanceAudit).
        self.keys = keys
        self.issuer = issuer
        self.ttl_s = ttl_s
        self.buckets = buckets

    def validate_token_request(
        self, client: ClientRecord, params: dict[str, str], limited: bool = True
    ) -> tuple[str, list[str]]:
        """The audience and granted scopes for `client`, or the RFC error.

        Only a request that will be granted takes a token from the client's bucket: a refused
        one (or a failed authentication, limited in `failures.py`) costs the client nothing,
        nor does a dashboard sign-in (`limited` False, limited by the dashboard).
        """
        allowed = scopes.ALLOWED.get(client.kind, {})
        audience = params.get("audience")
        if audience is None:
            if len(allowed) != 1:
                # RFC 8707 §2: a missing resource is `invalid_target`. An operator may use two
                # audiences, so it must say which one; guessing could grant the wrong power.
                raise InvalidTarget("audience is required for this client: " + " ".join(allowed))
            audience = next(iter(allowed))
        if audience not in allowed:
            raise InvalidTarget("audience unknown or not allowed for this client")
        permitted = allowed[audience]
        requested = params.get("scope")
        if requested is None:
            granted = sorted(permitted)
        else:
            # RFC 6749 §3.3: space-delimited; order and repeats carry no meaning.
            wanted = set(requested.split())
            if not wanted or not wanted <= permitted:
                raise InvalidScope("scope not allowed for this client and audience")
            granted = sorted(wanted)
        if self.buckets is not None and limited:
            wait = self.buckets.take(client.client_id)
            if wait:
                raise TooManyRequests(wait)
        return audience, granted

    def claims(self, client: ClientRecord, audience: str, granted: list[str]) -> dict[str, Any]:
        """The claims of the token to issue (its `jti` goes into the audit record first)."""
        now = int(time.time())
        if client.tokens_valid_after is not None:
            # Tokens with an `iat` before it are revoked (registry/service.py `_revoke_tokens`):
            # a token issued in the second of the revocation carries the next second (within
            # the verifiers' leeway) instead of being refused with the revoked ones.
            now = max(now, math.ceil(client.tokens_valid_after))
        scope = " ".join(granted)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": client.client_id,
            "client_id": client.client_id,
            "aud": audience,
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": secrets.token_urlsafe(12),  # 96 bits: unique, and keeps the token short
            "scope": scope,
        }
        if client.kind == DEVICE and client.lot:
            claims["lot"] = client.lot
        return claims

    def sign(self, claims: dict[str, Any]) -> dict[str, Any]:
        """The token response (RFC 6749 §5.1) for `claims`, signed with the active key."""
        return {
            "access_token": self.keys.signer().sign_access_token(claims),
            "token_type": "Bearer",
            "expires_in": self.ttl_s,
            "scope": claims["scope"],
        }
