"""Dashboard sessions, kept on the server (the backend-for-frontend pattern), in the database.

The IETF's "OAuth 2.0 for Browser-Based Applications" (draft-ietf-oauth-browser-based-apps,
§6.1 Backend For Frontend) keeps tokens out of the browser: the browser holds only an opaque
session cookie, the server holds the access tokens and uses them on the browser's behalf. Here:

- the cookie is 256 random bits, `HttpOnly` (no script reads it), `SameSite=Strict` (no other
  site's page sends it), `Secure` and `__Host-` prefixed when the public URL is HTTPS (RFC
  6265bis §4.1.3.2: no Domain, Path=/, only over HTTPS; see `routes.Dashboard.secure`);
- sessions live in the database (`ui_sessions`), so every instance behind the load balancer
  sees the same ones and a restart signs nobody out. A row is found by a hash of the cookie,
  and what it holds (the tokens, the CSRF token, a rotated secret waiting to be shown once) is
  sealed with AES-256-GCM under a key derived from the cookie: the database alone, a dump or a
  backup, hands out no live token, no session and no board secret, and needs no key of its own
  shared between instances;
- a session ends when its first token expires, on logout at once (on every instance: the row
  is gone), and when the operator's tokens stop verifying (disabled or deleted: the verifier's
  status check, every request). Expired rows are deleted as they are met and once a minute, and
  one operator holds at most `MAX_PER_OPERATOR` sessions (the oldest go first);
- each session has its own CSRF token (a synchronizer token, OWASP CSRF cheat sheet), checked
  in constant time on every state change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Engine, delete, insert, select, update

from provisioning.service.auth.secrets import same_text
from provisioning.store.models import UiSession

MAX_PER_OPERATOR = 20
MAX_COOKIE = 100
PURGE_EVERY_S = 60.0
_NONCE = 12
_SESSION = b"parkfleet session"
_SECRET = b"parkfleet rotated secret"


@dataclass(eq=False)
class Session:
    """Who is signed in, and the tokens the server uses for them (never sent to the browser)."""

    client_id: str
    role: str  # "admin" | "viewer"
    read_token: str  # parkfleet-ingest, counts:read
    admin_token: str | None  # parkfleet-admin, devices:admin; None for a viewer
    expires_at: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    ended: bool = False  # set by logout in this process: its open event streams stop at once
    key: str = field(default="", repr=False)  # the row's key (hash of the cookie)
    seal_key: bytes = field(default=b"", repr=False)  # derived from the cookie, never stored

    @property
    def admin(self) -> bool:
        return self.admin_token is not None

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and same_text(presented, self.csrf)


def _derive(cookie: str, label: bytes) -> bytes:
    # The cookie is 256 random bits: HMAC-SHA256 with distinct labels gives independent keys
    # (the row's lookup key and the sealing key; HKDF-Expand with one block does the same).
    return hmac.new(cookie.encode("utf-8", "surrogatepass"), label, hashlib.sha256).digest()


def _row_key(cookie: str) -> str:
    return _derive(cookie, b"row").hex()


def _seal(key: bytes, label: bytes, value: Any) -> bytes:
    nonce = secrets.token_bytes(_NONCE)
    return nonce + AESGCM(key).encrypt(nonce, json.dumps(value).encode(), label)


def _open(key: bytes, label: bytes, blob: bytes) -> Any:
    """The sealed value, or None if `blob` was not sealed under `key` (or was altered)."""
    try:
        return json.loads(AESGCM(key).decrypt(blob[:_NONCE], blob[_NONCE:], label))
    except (InvalidTag, ValueError):
        return None


class SessionStore:
    """Sessions in the `ui_sessions` table, by the hash of their cookie."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # This process's live session objects, so a logout here ends its event streams at once
        # (other instances' streams see the row gone at their next check).
        self._local: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()
        self._purged = 0.0

    def create(self, session: Session, now: float | None = None) -> str:
        """Store `session`; returns the cookie value to send (once)."""
        now = time.time() if now is None else now
        cookie = secrets.token_urlsafe(32)
        session.key, session.seal_key = _row_key(cookie), _derive(cookie, b"seal")
        sealed = _seal(
            session.seal_key,
            _SESSION,
            [session.role, session.read_token, session.admin_token, session.csrf],
        )
        newest = (
            select(UiSession.key)
            .where(UiSession.client_id == session.client_id)
            .order_by(UiSession.created_at.desc())
            .limit(MAX_PER_OPERATOR)
            .scalar_subquery()
        )
        with self._engine.begin() as conn:
            conn.execute(
                insert(UiSession).values(
                    key=session.key, client_id=session.client_id, created_at=now,
                    expires_at=session.expires_at, sealed=sealed, new_secret=None,
                )
            )  # fmt: skip
            conn.execute(
                delete(UiSession).where(
                    UiSession.client_id == session.client_id, UiSession.key.not_in(newest)
                )
            )
        self._local[session.key] = session
        self.purge(now)
        return cookie

    def get(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The live session for `cookie`; an expired one is deleted and None returned."""
        if not cookie or len(cookie) > MAX_COOKIE:
            return None
        now = time.time() if now is None else now
        key = _row_key(cookie)
        with self._engine.connect() as conn:
            row = conn.execute(
                select(UiSession.client_id, UiSession.expires_at, UiSession.sealed).where(
                    UiSession.key == key
                )
            ).first()
        if row is None:
            return None
        if now >= row.expires_at:
            self._forget(key)
            return None
        local = self._local.get(key)
        if local is not None and not local.ended:
            return local
        seal_key = _derive(cookie, b"seal")
        opened = _open(seal_key, _SESSION, row.sealed)
        if opened is None:
            return None
        role, read_token, admin_token, csrf = opened
        session = Session(
            row.client_id, role, read_token, admin_token, row.expires_at, csrf,
            key=key, seal_key=seal_key,
        )  # fmt: skip
        self._local[key] = session
        return session

    def alive(self, session: Session, now: float | None = None) -> bool:
        """The session is still in the store and unexpired (an event stream's periodic check:
        a logout on another instance ends it too)."""
        now = time.time() if now is None else now
        if session.ended or now >= session.expires_at:
            return False
        with self._engine.connect() as conn:
            found = conn.execute(select(UiSession.key).where(UiSession.key == session.key)).first()
        return found is not None

    def end(self, cookie: str | None) -> None:
        """Forget the session now (logout), on every instance."""
        if cookie and len(cookie) <= MAX_COOKIE:
            self._forget(_row_key(cookie))

    def _forget(self, key: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(UiSession).where(UiSession.key == key))
        local = self._local.pop(key, None)
        if local is not None:
            local.ended = True

    def keep_secret(
        self, session: Session, client_id: str, secret: str, until: float | None
    ) -> None:
        """A rotated secret, sealed, waiting for the one page that shows it."""
        sealed = _seal(session.seal_key, _SECRET, [client_id, secret, until])
        with self._engine.begin() as conn:
            conn.execute(
                update(UiSession).where(UiSession.key == session.key).values(new_secret=sealed)
            )

    def take_secret(self, session: Session) -> tuple[str, str, float | None] | None:
        """The waiting rotated secret, removed as it is read: of several requests (on any
        instances) at most one gets it."""
        with self._engine.begin() as conn:
            sealed = conn.execute(
                select(UiSession.new_secret).where(UiSession.key == session.key)
            ).scalar()
            if sealed is None:
                return None
            taken = conn.execute(
                update(UiSession)
                .where(UiSession.key == session.key, UiSession.new_secret == sealed)
                .values(new_secret=None)
            )
            if taken.rowcount != 1:
                return None
        opened = _open(session.seal_key, _SECRET, sealed)
        if opened is None:
            return None
        client_id, secret, until = opened
        return client_id, secret, until

    def purge(self, now: float | None = None) -> None:
        """Delete expired sessions (at most once a minute per process)."""
        now = time.time() if now is None else now
        if now - self._purged < PURGE_EVERY_S:
            return
        self._purged = now
        with self._engine.begin() as conn:
            conn.execute(delete(UiSession).where(UiSession.expires_at <= now))
