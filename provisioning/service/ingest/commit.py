"""Group commit of count posts: posts arriving in one event-loop turn share one transaction.

`store/groupcommit.py` stores the posts of one loop turn in one transaction and answers each
after the commit. On SQLite (one writer at a time, in-process) the group is written inline on
the loop (`sql.Writer`). On PostgreSQL one worker thread writes each group on a connection it
holds (`sql.HeldConnection`), while the next group forms on the loop: no pool checkout, BEGIN
and COMMIT per post, no thread per waiting post, and one lot lock and total per lot per group
instead of per post (ingest/store.py `store_group`, which also orders the work so that
concurrent groups of several workers or instances cannot deadlock).

Each request's own work is still all or nothing: a request the store refuses (`UnknownDevice`)
writes nothing before refusing, and if the transaction fails every request of the group gets
the error (a database error: 503 when unavailable, edge.py) and nothing of it is stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy import Engine

from provisioning.service.ingest.schemas import CountsBatch
from provisioning.service.ingest.store import IngestResult, Item, UnknownDevice, store_group
from provisioning.store import sql
from provisioning.store.db import CONFLICT_ERRORS
from provisioning.store.groupcommit import GroupCommit

log = logging.getLogger(__name__)
Done = TypeVar("Done")


class _Transactions(Protocol):
    def run(self, work: Callable[[sql.Tx], Done]) -> Done: ...

    def close(self) -> None: ...


class CountsCommit(GroupCommit[Item, IngestResult]):
    """Stores batches one transaction per group; `after_commit` (the MQTT publisher's wake-up)
    runs once per group that stored a reading."""

    def __init__(
        self, engine: Engine, fan_out: bool, after_commit: Callable[[], None] | None
    ) -> None:
        super().__init__()
        # PostgreSQL: the commit mostly waits on the network and the WAL flush, so a worker
        # thread writes while the loop serves the next requests (store/groupcommit.py).
        self.in_thread = engine.dialect.name == "postgresql"
        self._transactions: _Transactions = (
            sql.HeldConnection(engine) if self.in_thread else sql.Writer(engine)
        )
        self._fan_out = fan_out
        self._after_commit = after_commit

    async def store(self, device_id: str, batch: CountsBatch) -> IngestResult:
        """Store `batch` for `device_id`; returns once it is committed."""
        return await self.submit((device_id, batch))

    def write(self, items: list[Item]) -> list[IngestResult | Exception]:
        received_at = time.time()

        def group(tx: sql.Tx) -> list[IngestResult | UnknownDevice]:
            return store_group(tx, items, received_at, self._fan_out)

        try:
            outcomes = self._transactions.run(group)
        except CONFLICT_ERRORS as error:
            # store_group's lock order rules deadlocks out between groups; another writer (an
            # operator's recount) may still meet one. Nothing was stored: once more.
            log.warning("storing %d count posts: %s; retrying once", len(items), error)
            outcomes = self._transactions.run(group)
        if self._after_commit is not None and any(
            isinstance(outcome, IngestResult) and outcome.accepted for outcome in outcomes
        ):
            self._after_commit()
        return list(outcomes)

    def close(self) -> None:
        """Write what is waiting (called on shutdown) and give the connection back."""
        self.shutdown()
        self._transactions.close()
