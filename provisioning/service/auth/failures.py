"""Failed client authentications: limited apart from issuance, and audited in aggregate.

Client IDs are not secret (they are in MQTT topics, in `sub`, in the lot API), so a failure must
never spend the client's own issuance quota: anyone could lock a board out. Failures have two
limits of their own instead (token buckets, `ratelimit.py`):

- per source address: once spent, every request from that address is refused (429) before any
  database or hashing work, which bounds what one attacker can make the server do;
- per client ID: once spent, a *wrong* secret for that client is answered 429 instead of 401, but
  the right secret is still served, so guessing from many addresses locks nobody out.

The dashboard's sign-in exchanges the form's credentials at the token endpoint in process; that
request carries the browser's address under `SIGN_IN_SOURCE` in its ASGI scope (which no request
from the network can set). Its failures then count per client ID and are audited with the
browser's address, but spend no per-source bucket here: the dashboard limits sign-ins per
browser address itself, and the process's own address (127.0.0.1) must stay usable by local
clients whatever a guesser does at the sign-in form.

Failures are audited as `auth.fail` events, one per client ID per window with a count (and one
for all unknown client IDs together), so a flood of wrong secrets cannot fill the audit log.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from provisioning.service.auth.errors import TooManyRequests
from provisioning.service.auth.ratelimit import TokenBuckets
from provisioning.service.config import Settings
from provisioning.store import audit

log = logging.getLogger(__name__)

_SOURCES_KEPT = 5  # addresses named per audit row: enough to see where a flood comes from
_FAILED = "too many failed authentications; retry later"
# ASGI scope key of the dashboard's in-process sign-in exchange: the browser's address.
SIGN_IN_SOURCE = "parkfleet.sign_in_source"


class FailureAudit:
    """Counts failures per client ID in memory and writes one `auth.fail` row per client ID
    per window (target None: all unknown IDs), so the row count is bounded by the registry."""

    def __init__(self, sessions: sessionmaker[Session], window_s: float) -> None:
        self._sessions = sessions
        self._window_s = window_s
        self._pending: dict[str | None, tuple[int, set[str]]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def count(self, client_id: str | None, source: str) -> None:
        """Count one failure (call on the event loop); written at the end of the window."""
        count, sources = self._pending.get(client_id, (0, set()))
        if len(sources) < _SOURCES_KEPT:
            sources.add(source)
        self._pending[client_id] = (count + 1, sources)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window_s, self.flush)

    def flush(self) -> None:
        """Write the window's counts (one short transaction, once per window at most)."""
        self._timer = None
        pending, self._pending = self._pending, {}
        if not pending:
            return
        events: list[tuple[str, str, str | None, dict[str, Any] | None]] = [
            (
                "anonymous",
                "auth.fail",
                client_id,
                {
                    "count": count,
                    "window_s": self._window_s,
                    "sources": sorted(sources),
                    **({"unknown_client_id": True} if client_id is None else {}),
                },
            )
            for client_id, (count, sources) in pending.items()
        ]
        try:
            with self._sessions.begin() as session:
                audit.record_many(session, events)
        except SQLAlchemyError as error:
            # One line, never a traceback per window: the counts are also in the metrics.
            log.warning("could not audit %d failed authentications: %s", len(events), error)

    def close(self) -> None:
        """Write what is counted (on shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
        self.flush()


class FailureLimits:
    """The two failure limits and the aggregated audit, shared by token and introspection."""

    def __init__(self, settings: Settings, failure_audit: FailureAudit) -> None:
        self.by_source = TokenBuckets(
            settings.auth_fail_source_burst, settings.auth_fail_source_per_hour
        )
        self.by_client = TokenBuckets(
            settings.auth_fail_client_burst, settings.auth_fail_client_per_hour
        )
        self.audit = failure_audit

    def check_source(self, source: str, limited: bool = True) -> None:
        """Refuse (429) a source address whose failures are spent, before any work (`limited`
        False: a sign-in, limited by the dashboard per browser address)."""
        wait = self.by_source.wait_time(source) if limited else 0.0
        if wait:
            raise TooManyRequests(wait, _FAILED)

    def failed(self, client_id: str, known: bool, source: str, limited: bool = True) -> None:
        """Record a failure; raises 429 once the client ID's failures are spent (the caller
        raises `invalid_client` otherwise)."""
        if limited:
            self.by_source.take(source)
        wait = self.by_client.take(client_id)
        self.audit.count(client_id if known else None, source)
        if wait:
            raise TooManyRequests(wait, _FAILED)
