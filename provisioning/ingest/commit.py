"""Group commit of count posts (SQLite): posts arriving together share one transaction.

SQLite has one writer at a time, so on it `store/groupcommit.py` stores the posts of one
event-loop turn in one transaction and answers each after the commit. Each request's own work is
still all or nothing: a request the store refuses (`UnknownDevice`) writes nothing before
refusing, and if the commit itself fails every request of the group gets the error and nothing
of it is stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from provisioning.ingest.schemas import CountsBatch
from provisioning.ingest.store import IngestResult, UnknownDevice, store_counts
from provisioning.store import sql
from provisioning.store.groupcommit import GroupCommit


class CountsCommit(GroupCommit[tuple[str, CountsBatch], IngestResult]):
    """Stores batches on the event loop thread (SQLite's `sql.Writer`), one commit per group;
    `after_commit` (the MQTT publisher's wake-up) runs once per group that stored a reading."""

    def __init__(
        self, writer: sql.Writer, fan_out: bool, after_commit: Callable[[], None] | None
    ) -> None:
        super().__init__()
        self._writer = writer
        self._fan_out = fan_out
        self._after_commit = after_commit

    async def store(self, device_id: str, batch: CountsBatch) -> IngestResult:
        """Store `batch` for `device_id`; returns once it is committed."""
        return await self.submit((device_id, batch))

    def write(self, items: list[tuple[str, CountsBatch]]) -> list[IngestResult | Exception]:
        received_at = time.time()
        outcomes: list[IngestResult | Exception] = []
        with self._writer.transaction() as tx:
            for device_id, batch in items:
                try:
                    outcomes.append(store_counts(tx, device_id, batch, received_at, self._fan_out))
                except UnknownDevice as refused:
                    outcomes.append(refused)
        if self._after_commit is not None and any(
            not isinstance(outcome, Exception) and outcome.accepted for outcome in outcomes
        ):
            self._after_commit()
        return outcomes
