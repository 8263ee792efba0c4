"""Dashboard sessions, kept on the server (the backend-for-frontend pattern).

The IETF's "OAuth 2.0 for Browser-Based Applications" (draft-ietf-oauth-browser-based-apps,
§6.1 Backend For Frontend) keeps tokens out of the browser: the browser holds only an opaque
session cookie, the server holds the access tokens and uses them on the browser's behalf. Here:

- the cookie is 256 random bits, `HttpOnly` (no script reads it), `SameSite=Strict` (no other
  site's page sends it), `Secure` and `__Host-` prefixed when served over TLS (RFC 6265bis
  §4.1.3.2: no Domain, Path=/, only over HTTPS);
- the store keeps a hash of it, so a memory dump does not hand out live cookies;
- a session ends when its first token expires, on logout at once, and when the operator's
  tokens stop verifying (disabled or deleted: the verifier's status check, every request);
- each session has its own CSRF token (a synchronizer token, OWASP CSRF cheat sheet), checked
  in constant time on every state change.

Sessions live in this process's memory: a restart signs everybody out, which is the safe side.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

MAX_SESSIONS = 10_000


@dataclass
class Session:
    """Who is signed in, and the tokens the server uses for them (never sent to the browser)."""

    client_id: str
    role: str  # "admin" | "viewer"
    read_token: str  # parkfleet-ingest, counts:read
    admin_token: str | None  # parkfleet-admin, devices:admin; None for a viewer
    expires_at: float
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    ended: bool = False  # set by logout: open event streams stop too
    # A rotated secret waiting to be shown once: (client_id, secret, old one valid until).
    new_secret: tuple[str, str, float | None] | None = None

    @property
    def admin(self) -> bool:
        return self.admin_token is not None

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


class SessionStore:
    """Sessions by the hash of their cookie; bounded (oldest dropped first)."""

    def __init__(self, max_sessions: int = MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_sessions

    def create(self, session: Session) -> str:
        """Store `session`; returns the cookie value to send (once)."""
        cookie = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[_key(cookie)] = session
            while len(self._sessions) > self._max:
                self._sessions.popitem(last=False)
        return cookie

    def get(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The live session for `cookie`; an expired one is dropped and None returned."""
        if not cookie or len(cookie) > 100:
            return None
        key = _key(cookie)
        now = time.time() if now is None else now
        with self._lock:
            session = self._sessions.get(key)
            if session is not None and now >= session.expires_at:
                del self._sessions[key]
                session.ended = True
                return None
            return session

    def end(self, cookie: str | None) -> None:
        """Forget the session now (logout)."""
        if cookie:
            with self._lock:
                session = self._sessions.pop(_key(cookie), None)
            if session is not None:
                session.ended = True

    def __len__(self) -> int:
        return len(self._sessions)
