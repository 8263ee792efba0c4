"""Group commit: writes that reach the store in the same event-loop turn share one transaction.

Measured on SQLite (WAL, synchronous=NORMAL): a commit (a WAL append) costs as much as a
one-reading post's SQL, and a transaction per issued token (~600 µs) more than authenticating
and signing together. A background writer thread was no better: it fought the event loop for
the GIL. So requests queue their write and wait; at the end of the loop turn (`call_soon`, after
the requests already runnable have queued theirs) one transaction writes the whole group on the
loop itself, and each request is answered only after that commit. Durability is unchanged:
nobody is told "done" before their write is committed, even if the process is killed the next
instant. Alone, a request is written at once (one loop turn later); under load, groups form by
themselves. A subclass whose commit mostly waits rather than computes (the token endpoint's
audit: an fsync under synchronous=FULL, or a PostgreSQL round trip) sets `in_thread`: its group
is written by one worker thread, which holds no GIL while it waits, and the next group forms on
the loop meanwhile.

A subclass says how to write a group (`write`, one transaction, one outcome per item: a result,
or an exception refusing that item alone, after which the item must have written nothing), and
what the requests get if the transaction itself fails (`refusal`: by default the error): then
nothing of the group is stored and every request of it fails.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(ABC, Generic[Item, Result]):
    """Queues items from requests on the event loop and writes them in one transaction per
    loop turn; `submit` returns once the item's transaction is committed."""

    # True: each group is written in one worker thread while the loop serves other requests;
    # the next group forms meanwhile and is written when this one is committed. For writes
    # whose commit mostly waits (a SQLite fsync under synchronous=FULL, a PostgreSQL round trip
    # and its WAL flush): measured on the token endpoint, the loop sat idle in that wait.
    in_thread = False

    def __init__(self) -> None:
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writing = False
        self._thread: ThreadPoolExecutor | None = None

    @abstractmethod
    def write(self, items: list[Item]) -> list[Result | Exception]:
        """Write `items` in one transaction; one outcome per item, in order. Raising means the
        transaction failed and nothing of the group was stored."""

    def refusal(self, error: Exception) -> Exception:
        """What each request of a group gets when `write` raised `error` (called per request)."""
        return error

    async def submit(self, item: Item) -> Result:
        """Queue `item` for this loop turn's transaction; its outcome once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1 and not self._writing:
            # After the requests already runnable in this turn have queued theirs.
            loop.call_soon(self._next_group)
        return await future

    def _next_group(self) -> None:
        if not self.in_thread:
            self.flush()
            return
        group, self._pending = self._pending, []
        if not group:
            return
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix=type(self).__name__)
        self._writing = True
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._thread, self._outcomes, [item for item, _ in group])

        def committed(finished: asyncio.Future[list[Result | Exception] | Exception]) -> None:
            self._writing = False
            self._settle(group, finished.result())
            if self._pending:
                loop.call_soon(self._next_group)

        done.add_done_callback(committed)

    def _outcomes(self, items: list[Item]) -> list[Result | Exception] | Exception:
        try:
            return self.write(items)
        except Exception as error:  # noqa: BLE001 - handed to every waiting request
            return error

    def flush(self) -> None:
        """Write the waiting items in one transaction (on this thread) and release their
        requests."""
        group, self._pending = self._pending, []
        if group:
            self._settle(group, self._outcomes([item for item, _ in group]))

    def shutdown(self) -> None:
        """Write what is waiting and stop the writer thread (on shutdown)."""
        self.flush()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
            self._thread = None

    def _settle(
        self,
        group: list[tuple[Item, asyncio.Future[Result]]],
        outcomes: list[Result | Exception] | Exception,
    ) -> None:
        if isinstance(outcomes, Exception):
            for _item, future in group:
                if not future.done():
                    future.set_exception(self.refusal(outcomes))
            return
        for (_item, future), outcome in zip(group, outcomes, strict=True):
            if future.done():  # the client went away
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
