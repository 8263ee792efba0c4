"""Client authentication (RFC 6749 §2.3): `client_secret_basic` and `client_secret_post`.

Shared by the token endpoint and the introspection endpoint. A client authenticates with its
current secret, or with the previous one until `previous_secret_expires_at` (the grace period
after `rotate-secret`). Unknown, disabled and deleted clients all get the same `invalid_client`
and cost the same hashing work, so the answer does not reveal which IDs exist.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from sqlalchemy import Engine, bindparam, select

from provisioning.common.text import is_clean_text
from provisioning.service.auth.errors import InvalidClient, InvalidRequest
from provisioning.service.auth.failures import FailureLimits
from provisioning.service.auth.secrets import SecretHasher, same_text
from provisioning.store import auth_sql, sql
from provisioning.store.groupcommit import GroupCommit
from provisioning.store.models import Client

# Compared against when the client is unknown, so that path does the same HMAC work.
_NO_SUCH_HASH = "hmac-sha256$" + "0" * 64
_MAX_FIELD = 256


@dataclass(frozen=True)
class Credentials:
    """What the request presented; `basic` tells which method (for `WWW-Authenticate`)."""

    client_id: str
    client_secret: str
    basic: bool


@dataclass(frozen=True)
class ClientRecord:
    """The parts of a client row that authorization decisions need."""

    client_id: str
    kind: str
    lot: str | None
    active: bool  # enabled and not deleted
    # Tokens with an earlier `iat` are revoked (zero-grace rotation, disable); None: none are.
    tokens_valid_after: float | None = None
    issuer: str | None = None  # an external issuer's URL; None: the built-in server


def parse_basic(header: str) -> tuple[str, str]:
    """Decode `Authorization: Basic ...` per RFC 6749 §2.3.1.

    The client ID and secret are form-urlencoded *before* base64, so they are unquoted after
    splitting on the first colon. Anything malformed is `invalid_request`, but for characters
    outside base64's ASCII alphabet, which are no credentials at all: `invalid_client` (RFC 6749
    §5.2, 401 with the Basic challenge).
    """
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise InvalidRequest("unsupported Authorization scheme; use Basic")
    if not value.isascii():
        raise InvalidClient("malformed Basic credentials", basic=True)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("malformed Basic credentials") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise InvalidRequest("malformed Basic credentials")
    try:
        client_id = unquote_plus(client_id, errors="strict")
        secret = unquote_plus(secret, errors="strict")
    except UnicodeDecodeError:
        raise InvalidRequest("malformed Basic credentials") from None
    if not (is_clean_text(client_id) and is_clean_text(secret)):
        raise InvalidRequest("malformed Basic credentials")
    return client_id, secret


def extract_credentials(authorization: str | None, params: dict[str, str]) -> Credentials:
    """The client's credentials from the Authorization header or the body (never both).

    RFC 6749 §2.3: a client must not use more than one authentication method per request.
    """
    body_id = params.pop("client_id", None)
    body_secret = params.pop("client_secret", None)
    if authorization is not None:
        if body_secret is not None:
            raise InvalidRequest("use either HTTP Basic or client_secret in the body, not both")
        client_id, secret = parse_basic(authorization)
        if body_id is not None and body_id != client_id:
            raise InvalidRequest("client_id in the body differs from HTTP Basic")
        basic = True
    elif body_id is not None and body_secret is not None:
        client_id, secret, basic = body_id, body_secret, False
    else:
        raise InvalidClient("client authentication required")
    if not client_id or not secret or len(client_id) > _MAX_FIELD or len(secret) > _MAX_FIELD:
        raise InvalidClient(basic=basic)
    return Credentials(client_id, secret, basic)


def _same(presented: str, stored: str | None) -> bool:
    return stored is not None and same_text(presented, stored)


_COLUMNS = (
    Client.kind,
    Client.lot,
    Client.secret_hash,
    Client.previous_secret_hash,
    Client.previous_secret_expires_at,
    Client.enabled,
    Client.deleted_at,
    Client.tokens_valid_after,
)
_NAMES = [column.key for column in _COLUMNS]


class ClientRows(GroupCommit[str, dict[str, Any] | None]):
    """PostgreSQL: the client rows that the token requests of one event-loop turn need, read with
    one SELECT by one thread on its own connection (store/groupcommit.py), instead of a round
    trip per request that would hold the event loop while PostgreSQL answers."""

    in_thread = True

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self._held = sql.HeldConnection(engine, read_only=True)

    def write(self, items: list[str]) -> list[dict[str, Any] | Exception | None]:
        def read(tx: sql.Tx) -> list[tuple[Any, ...]]:
            return auth_sql.client_rows(tx, _NAMES, list(set(items)))

        rows = {row[0]: dict(zip(_NAMES, row[1:], strict=True)) for row in self._held.run(read)}
        return [rows.get(client_id) for client_id in items]

    def close(self) -> None:
        self.shutdown()
        self._held.close()


class ClientAuthenticator:
    """Checks client credentials against the registry; failures go to `FailureLimits`."""

    def __init__(self, engine: Engine, hasher: SecretHasher, failures: FailureLimits) -> None:
        self._engine = engine
        self._hasher = hasher
        self._failures = failures
        # One indexed SELECT is the only database read on the token path: inline on SQLite (in
        # process, ~15 µs), grouped per loop turn in a thread on PostgreSQL (a round trip).
        self._query = sql.FastQuery(
            engine, select(*_COLUMNS).where(Client.client_id == bindparam("client_id"))
        )
        self._rows = ClientRows(engine) if engine.dialect.name == "postgresql" else None

    def close(self) -> None:
        """Give the lookup's connection back (shutdown)."""
        if self._rows is not None:
            self._rows.close()

    async def authenticate(
        self, creds: Credentials, source: str, source_limited: bool = True
    ) -> ClientRecord:
        """The client if `creds` are right and it is enabled; else `invalid_client` (or 429
        once the failures of `source` or of the client ID are spent, see `failures.py`;
        `source_limited` False: a dashboard sign-in, whose source is limited there).

        The right secret is served even while others fail for the same client ID: failures
        never spend the issuance quota, so nobody can lock a board out by knowing its ID.
        """
        self._failures.check_source(source, source_limited)
        if self._rows is not None:
            row = await self._rows.submit(creds.client_id)
        else:
            row = self._query.first(client_id=creds.client_id)
        now = time.time()
        if row is None:
            self._hasher.verify(creds.client_secret, _NO_SUCH_HASH)
            ok = False
        else:
            # One keyed hash, compared in constant time with the current and previous hashes.
            presented = self._hasher.hash(creds.client_secret)
            current = _same(presented, row["secret_hash"])
            until = row["previous_secret_expires_at"]
            previous = _same(presented, row["previous_secret_hash"])
            ok = (current or (previous and until is not None and now < until)) and bool(
                row["enabled"] and row["deleted_at"] is None
            )
        if not ok or row is None:
            self._failures.failed(creds.client_id, row is not None, source, source_limited)
            raise InvalidClient(basic=creds.basic)
        return ClientRecord(
            creds.client_id,
            row["kind"],
            row["lot"],
            active=True,
            tokens_valid_after=row["tokens_valid_after"],
        )
