"""Change notifications between instances sharing one PostgreSQL database (LISTEN/NOTIFY).

Migration 0005 adds triggers that `pg_notify` on every change to a client row (disable, enable,
delete, secret rotation, move to another lot) and to the signing-key set, whichever instance or
`parkctl` verb made it. Each instance listens on one dedicated connection in a daemon thread
(psycopg 3 `Connection.notifies`) and drops the client's cached status, or reloads the key set,
as the notification arrives: revocation reaches every instance well within a second.

While the listening connection is down, nothing is trusted from the cache longer than the
status TTL (`device_status_ttl_s`, the fallback bound); the thread reconnects with exponential
backoff (0.5 s to 30 s) and, once listening again, forgets every cached status, since changes
made in between were not announced.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from provisioning.store.auth_sql import CLIENTS_CHANNEL, LISTEN_SQL, PING_SQL

if TYPE_CHECKING:
    from provisioning.service.auth.keys import KeyStore
    from provisioning.service.auth.verify import ClientDirectory

log = logging.getLogger(__name__)

APPLICATION_NAME = "parkfleet-listen"  # in pg_stat_activity
_POLL_S = 0.5  # how long one wait for notifications lasts (also how fast `stop` is seen)
_PING_S = 5.0  # a silent connection is probed this often, so a dead one is noticed
_BACKOFF_S = (0.5, 30.0)


def libpq_dsn(engine: Engine) -> str:
    """The engine's URL as psycopg wants it (no SQLAlchemy driver suffix)."""
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


class ChangeListener:
    """Listens for client and key changes on its own connection; `start`/`stop` from the
    app's lifespan."""

    def __init__(self, dsn: str, clients: ClientDirectory, keys: KeyStore | None) -> None:
        self._dsn = dsn
        self._clients = clients
        self._keys = keys
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()  # set while listening (tests wait on it)

    def start(self) -> None:
        """Start listening in a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="parkfleet-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (returns within about `_POLL_S`)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        backoff = _BACKOFF_S[0]
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = _BACKOFF_S[0]
            except (psycopg.Error, SQLAlchemyError) as error:  # keys refresh via SQLAlchemy
                log.warning(
                    "change notifications down (%s); status cached at most %.0f s, retry in %.1f s",
                    str(error).strip().splitlines()[0] if str(error).strip() else error,
                    self._clients.ttl_s,
                    backoff,
                )
            finally:
                self.connected.clear()
                self._clients.set_listening(False)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, _BACKOFF_S[1])

    def _listen(self) -> None:
        with psycopg.connect(
            self._dsn, autocommit=True, connect_timeout=5, application_name=APPLICATION_NAME
        ) as conn:
            for statement in LISTEN_SQL:
                conn.execute(statement)
            # From here on every change is announced; forget what may have changed before.
            self._clients.set_listening(True)
            if self._keys is not None:
                self._keys.refresh(force=True)
            self.connected.set()
            pinged = time.monotonic()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=_POLL_S):
                    if note.channel == CLIENTS_CHANNEL:
                        self._clients.forget(note.payload)
                    elif self._keys is not None:
                        self._keys.refresh(force=True)
                    pinged = time.monotonic()
                if time.monotonic() - pinged > _PING_S:
                    conn.execute(PING_SQL)
                    pinged = time.monotonic()
