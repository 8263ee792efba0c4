"""Group commit for SQLite: count posts that arrive together share one transaction.

SQLite has one writer at a time and its commit (a WAL append) costs as much as a one-reading
post's SQL. Requests that reach the store in the same event-loop turn are therefore stored in one
transaction and answered after its commit, so durability is unchanged: nobody is told "accepted"
before the readings are committed. Each request's own work is still all or nothing: a request
the store refuses (`UnknownDevice`) writes nothing before refusing, and if the commit itself fails
every request of the group gets the error and nothing of it is stored. Alone, a request is stored
at once (one loop turn later); under load, groups form by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from provisioning.ingest import sql, store
from provisioning.ingest.schemas import CountsBatch

Pending = tuple[str, CountsBatch, "asyncio.Future[store.IngestResult]"]


class GroupCommit:
    """Stores batches on the event loop thread (SQLite's `sql.Writer`), one commit per group."""

    def __init__(
        self, writer: sql.Writer, fan_out: bool, after_commit: Callable[[], None] | None
    ) -> None:
        self._writer = writer
        self._fan_out = fan_out
        self._after_commit = after_commit
        self._pending: list[Pending] = []

    async def store(self, device_id: str, batch: CountsBatch) -> store.IngestResult:
        """Store `batch` for `device_id`; returns once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[store.IngestResult] = loop.create_future()
        self._pending.append((device_id, batch, future))
        if len(self._pending) == 1:
            # After the requests already runnable in this turn have queued theirs.
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        group, self._pending = self._pending, []
        received_at = time.time()
        outcomes: list[tuple[asyncio.Future[store.IngestResult], Any]] = []
        try:
            with self._writer.transaction() as tx:
                for device_id, batch, future in group:
                    try:
                        result: Any = store.store_counts(
                            tx, device_id, batch, received_at, self._fan_out
                        )
                    except store.UnknownDevice as refused:
                        result = refused
                    outcomes.append((future, result))
        except Exception as error:  # noqa: BLE001 - handed to every waiting request
            for _device, _batch, future in group:
                if not future.done():
                    future.set_exception(error)
            return
        for future, outcome in outcomes:
            if future.done():  # the client went away
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        if self._after_commit is not None and any(
            not isinstance(outcome, Exception) and outcome.accepted for _, outcome in outcomes
        ):
            self._after_commit()
