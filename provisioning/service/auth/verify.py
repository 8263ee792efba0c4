"""The one access-token checker (RFC 9068 §4, RFC 8725), shared by every protected resource:
the admin API, the ingestion API and the introspection endpoint.

- Keys come from the local `KeyStore` (same process) or a remote JWKS URL (a resource server
  running elsewhere): the JWKS is cached, refetched when a token names an unknown `kid`, and
  refetches are rate-limited so forged `kid`s cannot turn us into a JWKS flooder.
- The algorithm is pinned to ES256 (no `none`, no HMAC keyed with a public key), `typ` must be
  `at+jwt`, and `iss`, `aud`, `exp`/`nbf`/`iat` (30 s leeway) and the required claims are checked.
- The token's `sub` must be an existing, enabled, not deleted client whose kind may hold the
  token's scopes, and the token must not be issued before the client's `tokens_valid_after`
  (a zero-grace rotation or a disable). On PostgreSQL every instance is told of a change at
  once (LISTEN/NOTIFY, listen.py): a revoked client's tokens stop working everywhere within a
  second. On SQLite, and while the notifications are down, the status is cached for
  `device_status_ttl_s` (at most 60 s), the bound for changes made by another process.
- Verified tokens are cached by their exact string (bounded LRU, never past `exp`), so a board
  posting every few seconds skips the signature check; the status check still applies.
- Tokens whose `iss` is a trusted external issuer (`--trust-issuer`) are checked by
  external.py against that issuer's keys; the registry check below is the same for both, and
  also requires the device to be registered for the token's issuer (None: the built-in one).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import jwt
from sqlalchemy import Engine, bindparam, event, select
from sqlalchemy.orm import Session, sessionmaker

from provisioning.common.scopes import AUDIENCES
from provisioning.service.auth import scopes
from provisioning.service.auth.claims import decode_checked
from provisioning.service.auth.clients import ClientRecord
from provisioning.service.auth.errors import InvalidToken
from provisioning.service.auth.external import ExternalTokens
from provisioning.service.auth.issuers import TrustedIssuers, parse_jwks
from provisioning.service.auth.keys import ALG, JWKS_MAX_AGE_S, JWT_TYPE, KeyStore
from provisioning.service.auth.principal import Principal
from provisioning.service.config import Settings
from provisioning.service.metrics import Metrics
from provisioning.store.models import Client
from provisioning.store.sql import FastQuery

log = logging.getLogger(__name__)

LEEWAY_S = 30
JWKS_REFETCH_MIN_S = 10.0
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"]
_MAX_TOKEN = 4096
# While change notifications arrive, a cached status is dropped by its notification; this only
# bounds the damage of one lost in a way nobody foresaw.
LISTENING_TTL_S = 300.0


_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Bits of the last character that carry no data, by the segment's length modulo 4 (1: none
# possible, not base64 at all).
_SPARE_BITS = {0: 0, 2: 0b1111, 3: 0b11}


def is_canonical_jws(token: str) -> bool:
    """True if `token` is three base64url segments in their one canonical spelling: no padding,
    no other characters, no set bits past the last byte (RFC 7515 §2, §7.1; RFC 4648 §3.5).

    A decoder that skips `=` or trailing bits accepts many strings for one token: a token that
    was refused, cached or counted under one spelling must not pass under another.
    """
    parts = token.split(".")
    if len(parts) != 3:
        return False
    for part in parts:
        spare = _SPARE_BITS.get(len(part) % 4)
        if spare is None or not _SEGMENT.fullmatch(part):
            return False
        if spare and _ALPHABET.index(part[-1]) & spare:
            return False
    return True


class LocalKeys:
    """Public keys straight from this process's `KeyStore`."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    def get(self, kid: str) -> Any | None:
        return self._store.public_key(kid)

    async def refetch(self, kid: str) -> Any | None:
        self._store.refresh()  # itself rate-limited to one database read per second
        return self._store.public_key(kid)


class RemoteJwks:
    """Public keys from a JWKS URL: cached for the JWKS `max-age`, refetched on an unknown
    `kid` at most every `min_interval_s`; a failed fetch keeps the keys already known."""

    def __init__(
        self,
        url: str,
        metrics: Metrics,
        min_interval_s: float = JWKS_REFETCH_MIN_S,
        max_age_s: float = JWKS_MAX_AGE_S,
    ) -> None:
        self.url = url
        self._metrics = metrics
        self._min_interval_s = min_interval_s
        self._max_age_s = max_age_s
        self._keys: dict[str, Any] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    def _stale(self) -> bool:
        return time.monotonic() - self._fetched_at > self._max_age_s

    def get(self, kid: str) -> Any | None:
        # A stale set answers nothing, so the caller goes through `refetch` (which may still
        # answer from it when refetching is not allowed yet or fails).
        return None if self._stale() else self._keys.get(kid)

    async def refetch(self, kid: str) -> Any | None:
        async with self._lock:
            wanted = kid not in self._keys or self._stale()
            if wanted and time.monotonic() - self._fetched_at >= self._min_interval_s:
                self._fetched_at = time.monotonic()
                self._metrics.jwks_fetches.inc()
                try:
                    async with httpx.AsyncClient(timeout=5) as http:
                        response = await http.get(self.url)
                        response.raise_for_status()
                        self._keys = _signing_keys(response.json())
                except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
                    log.warning("JWKS fetch from %s failed: %s", self.url, error)
        return self._keys.get(kid)


def _signing_keys(document: Any) -> dict[str, Any]:
    """The keys of our JWKS by `kid`: those that may verify the pinned algorithm."""
    return {kid: key.key for kid, key in parse_jwks(document).items() if ALG in key.algorithms}


class ClientDirectory:
    """Client status by ID, cached for `ttl_s` (the bound for disable/delete to bite), or, while
    change notifications are being received (listen.py), until a notification drops it (and
    at most `LISTENING_TTL_S`)."""

    def __init__(self, engine: Engine, ttl_s: float, max_entries: int = 100_000) -> None:
        self._engine = engine
        self.ttl_s = ttl_s
        self._max = max_entries
        self._cache: OrderedDict[str, tuple[float, ClientRecord | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._listening = False
        # Bumped by every forget: a read that began before a change must not cache its answer.
        self._generation = 0
        self._query = FastQuery(
            engine,
            select(
                Client.kind,
                Client.lot,
                Client.enabled,
                Client.deleted_at,
                Client.tokens_valid_after,
                Client.issuer,
            ).where(Client.client_id == bindparam("client_id")),
        )

    def set_listening(self, listening: bool) -> None:
        """Change notifications started or stopped arriving: forget everything cached (changes
        may have gone unannounced) and use the matching cache lifetime from now on."""
        with self._lock:
            self._listening = listening
            self._generation += 1
            self._cache.clear()

    def get(self, client_id: str, now: float | None = None) -> ClientRecord | None:
        now = time.monotonic() if now is None else now
        with self._lock:
            cached = self._cache.get(client_id)
            generation = self._generation
            ttl = LISTENING_TTL_S if self._listening else self.ttl_s
        if cached is not None and cached[0] + ttl > now:
            return cached[1]
        row = self._query.first(client_id=client_id)
        record = (
            None
            if row is None
            else ClientRecord(
                client_id,
                row["kind"],
                row["lot"],
                bool(row["enabled"] and not row["deleted_at"]),
                row["tokens_valid_after"],
                row["issuer"],
            )
        )
        with self._lock:
            if generation == self._generation:
                self._cache[client_id] = (now, record)
                self._cache.move_to_end(client_id)
                if len(self._cache) > self._max:
                    self._cache.popitem(last=False)
        return record

    def forget(self, client_id: str) -> None:
        """Drop a cached status at once."""
        with self._lock:
            self._generation += 1
            self._cache.pop(client_id, None)

    def watch(self, sessions: sessionmaker[Session]) -> None:
        """Forget a client's cached status as soon as a session of this process commits a
        change to it (disable, enable, delete), so the TTL bound only applies to changes made
        by other processes sharing the database."""

        def after_flush(session: Session, _context: Any) -> None:
            changed = session.info.setdefault("parkfleet_clients_changed", set())
            changed.update(o.client_id for o in session.dirty if isinstance(o, Client))

        def after_commit(session: Session) -> None:
            for client_id in session.info.pop("parkfleet_clients_changed", ()):
                self.forget(client_id)

        event.listen(sessions, "after_flush", after_flush)
        event.listen(sessions, "after_commit", after_commit)


KeySource = LocalKeys | RemoteJwks


class TokenVerifier:
    """Checks bearer tokens; `verify` returns the `Principal` or raises `InvalidToken`."""

    def __init__(
        self,
        keys: KeySource,
        issuer: str,
        clients: ClientDirectory,
        metrics: Metrics,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
        external: ExternalTokens | None = None,
    ) -> None:
        self.keys = keys
        self.external = external
        self.issuer = issuer
        self.clients = clients
        self.metrics = metrics
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock
        self._hit = metrics.token_checks.labels("cache_hit")
        self._verified = metrics.token_checks.labels("verified")
        self._refused = metrics.token_checks.labels("refused")

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        engine: Engine,
        sessions: sessionmaker[Session],
        keys: KeyStore,
        metrics: Metrics,
    ) -> TokenVerifier:
        """In-process keys, or the remote JWKS at `settings.jwks_url` when one is given."""
        source: KeySource = (
            RemoteJwks(settings.jwks_url, metrics) if settings.jwks_url else LocalKeys(keys)
        )
        clients = ClientDirectory(engine, settings.device_status_ttl_s)
        clients.watch(sessions)
        trusted = settings.trusted_issuers
        external = (
            ExternalTokens(
                TrustedIssuers.from_settings(trusted, settings.trust_ca_cert, metrics),
                settings.ingest_audience,
                LEEWAY_S,
            )
            if trusted
            else None
        )
        return cls(source, settings.issuer_url, clients, metrics, external=external)

    async def verify(self, token: str, audience: str | None) -> Principal:
        """The principal behind `token` for `audience` (None: any of ours, for introspection)."""
        try:
            cached = self._cache.get(token)
            if cached is not None and cached.claims["exp"] + LEEWAY_S > self._clock():
                self._hit.inc()
                self._cache.move_to_end(token)
                principal = cached
            else:
                principal = await self._verify_signed(token)
                self._verified.inc()
            if audience is not None and principal.audience != audience:
                raise InvalidToken("token is for another audience")
            checked = self._check_client(principal)
        except InvalidToken:
            self._refused.inc()
            raise
        if checked is not cached:
            self._cache[token] = checked
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return checked

    async def _verify_signed(self, token: str) -> Principal:
        if len(token) > _MAX_TOKEN:
            raise InvalidToken("token too long")
        if not is_canonical_jws(token):
            raise InvalidToken("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken("malformed token") from None
        if self.external is not None:
            iss = _unverified_issuer(token)
            if iss in self.external.issuers.by_url:
                return await self.external.verify(token, header, iss)
        if header.get("alg") != ALG:
            raise InvalidToken("unsupported algorithm")
        typ = header.get("typ")
        # RFC 9068 §4: typ is at+jwt (the media type application/at+jwt means the same).
        if not isinstance(typ, str) or typ.lower() not in (JWT_TYPE, "application/" + JWT_TYPE):
            raise InvalidToken("not an access token (typ)")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise InvalidToken("token names no key")
        key = self.keys.get(kid) or await self.keys.refetch(kid)
        if key is None:
            raise InvalidToken("unknown signing key")
        # The algorithm is pinned: the header never chooses it.
        claims = decode_checked(
            token, key, ALG, list(AUDIENCES), self.issuer, LEEWAY_S, REQUIRED_CLAIMS
        )
        sub, aud, scope = claims["sub"], claims["aud"], claims["scope"]
        if not (isinstance(sub, str) and isinstance(aud, str) and isinstance(scope, str)):
            raise InvalidToken("invalid token claims")
        if claims["client_id"] != sub:
            raise InvalidToken("invalid token claims")
        lot = claims.get("lot")
        principal = Principal(
            client_id=sub,
            kind="",  # filled in from the registry by _check_client
            audience=aud,
            scopes=frozenset(scope.split()),
            lot=lot if isinstance(lot, str) else None,
            claims=claims,
        )
        return principal

    def _check_client(self, principal: Principal) -> Principal:
        record = self.clients.get(principal.client_id)
        if record is None or not record.active:
            raise InvalidToken("client unknown, disabled or deleted")
        if record.issuer != principal.issuer:
            # A client ID is one issuer's: the same ID from another server is someone else.
            raise InvalidToken("client not registered for this issuer")
        revoked_before = record.tokens_valid_after
        if revoked_before is not None and principal.claims["iat"] < revoked_before:
            # Issued before a zero-grace rotation or a disable: revoked (README's bound).
            raise InvalidToken("token revoked")
        allowed = scopes.ALLOWED.get(record.kind, {}).get(principal.audience, frozenset())
        if principal.issuer is not None:
            # An external server may grant more than parkfleet lets this kind of client do (an
            # Auth0 app with every permission of the API): only what both allow is kept.
            if not principal.scopes & allowed:
                raise InvalidToken("token scope not allowed for this client")
            if not principal.scopes <= allowed:
                principal = replace(principal, scopes=principal.scopes & allowed)
        elif not principal.scopes <= allowed:
            raise InvalidToken("token scope not allowed for this client")
        if principal.kind != record.kind or principal.lot != record.lot:
            # The registry is the authority on kind and lot (a device may be moved).
            return replace(principal, kind=record.kind, lot=record.lot)
        return principal


def _unverified_issuer(token: str) -> str | None:
    """The token's `iss`, unverified: only to choose whose keys verify it."""
    try:
        iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.InvalidTokenError:
        return None
    return iss if isinstance(iss, str) else None
