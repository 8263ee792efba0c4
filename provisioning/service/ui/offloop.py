"""Dashboard work off the event loop, where every board's post is answered.

A dashboard page reads the store and renders a template: CPU work that, on the event loop,
held every board's post behind it (a 3,000-board page took the ingestion p99 from 10 ms to
456 ms). Here it runs in a worker thread, one page at a time (CPU-bound work gains nothing from
more threads, which would only take more of the interpreter from the loop), and the whole
fleet's board list, which every boards page sorts and filters, is read at most once per
FLEET_TTL_S for all sessions. tools/bench/dashload.py measures ingestion under that load.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from anyio import CapacityLimiter, to_thread
from jinja2 import Template
from sqlalchemy import Connection, Engine

from provisioning.service.ui import views

Done = TypeVar("Done")
FLEET_TTL_S = 1.0  # how old the boards list may be when a page shows it
# CPython hands the interpreter to a waiting thread only every switch interval (5 ms by
# default), so each step of a board's post (read, store, answer) could wait that long behind a
# page: at 0.5 ms the loop gets it back ten times sooner.
SWITCH_INTERVAL_S = 0.0005


def tune_interpreter() -> None:
    """Let the event loop take the interpreter back from a page's thread quickly."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)


class PageWork:
    """Reads and rendering for the dashboard, in one worker thread at a time."""

    def __init__(self, engine: Engine, token_ttl: int) -> None:
        self._engine = engine
        self._token_ttl = token_ttl
        self._limiter = CapacityLimiter(1)
        self._fleet: tuple[float, list[views.Board]] = (-FLEET_TTL_S, [])

    async def read(self, work: Callable[[Connection], Done]) -> Done:
        """`work(conn)` on a pooled connection in the worker thread."""

        def run() -> Done:
            with self._engine.connect() as conn:
                return work(conn)

        return await to_thread.run_sync(run, limiter=self._limiter)

    async def render(self, template: Template, values: dict[str, Any]) -> str:
        """`template` rendered with `values` in the worker thread."""
        return await to_thread.run_sync(lambda: template.render(**values), limiter=self._limiter)

    async def fleet(self) -> list[views.Board]:
        """Every board with its status (token expiry left to the page shown), read at most
        once per FLEET_TTL_S for all sessions; live changes reach open pages through
        /ui/events meanwhile. The list is shared: copy it before sorting."""
        read_at, boards = self._fleet
        if time.monotonic() - read_at > FLEET_TTL_S:
            ttl = self._token_ttl
            boards = await self.read(lambda conn: views.boards(conn, ttl, expiry=False))
            self._fleet = (time.monotonic(), boards)
        return boards

    def changed(self) -> None:
        """A board changed through this dashboard: the next boards page reads them anew."""
        self._fleet = (-FLEET_TTL_S, [])
