"""Live occupancy for open dashboards: Server-Sent Events fed by the ingest commit path.

`POST /v1/counts` calls `touched(lot, device)` right after its readings are committed, at the
same point where it wakes the MQTT outbox publisher; that costs a set insertion. A task on the
event loop then reads the new totals of the touched lots and the state of the touched boards
once (one query each, however many posts arrived) and puts one event per lot into every
subscriber's queue: at once after a quiet spell, else at most once per `interval_s`. So the
database work is per broadcast, not per post or per open dashboard, and an event reaches a
dashboard at most `interval_s` plus a query after the commit. A subscriber that does not
keep up (its queue is full) loses its oldest events and never blocks the others; each event
carries whole values (totals, not deltas), so the next one corrects it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from sqlalchemy import Engine, select

from provisioning.service.ingest import store
from provisioning.store.models import Client, DeviceState

log = logging.getLogger(__name__)

QUEUE_MAX = 64


class LiveFeed:
    """Subscribers (one asyncio.Queue of SSE frames each) and the lots touched since the last
    broadcast. Everything runs on the event loop thread."""

    def __init__(self, engine: Engine, interval_s: float = 0.2) -> None:
        self._engine = engine
        self.interval_s = interval_s
        self._lots: set[str] = set()
        self._devices: set[str] = set()
        self._subscribers: set[asyncio.Queue[bytes]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self._last = float("-inf")

    def touched(self, lot: str, device_id: str) -> None:
        """Readings for `device_id` in `lot` were committed (called on the event loop)."""
        if self._subscribers:
            self._lots.add(lot)
            self._devices.add(device_id)
            self._wake.set()

    def subscribe(self) -> asyncio.Queue[bytes]:
        """A queue of ready SSE frames; `unsubscribe` it when the client goes."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_MAX)
        self._subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return queue

    def unsubscribe(self, queue: asyncio.Queue[bytes]) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def snapshot(self) -> list[bytes]:
        """One frame per lot with its current totals (sent to a dashboard when it connects,
        so nothing committed between its page load and its subscription is missed)."""
        with self._engine.connect() as conn:
            lots = {lot["lot"] for lot in store.list_lots(conn)}
        return self._frames(lots, set())

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            # The first change after a quiet spell goes out at once; under a stream of posts,
            # at most one broadcast per interval carries all of them.
            wait = self._last + self.interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._wake.clear()
            self._last = time.monotonic()
            lots, self._lots = self._lots, set()
            devices, self._devices = self._devices, set()
            if not lots or not self._subscribers:
                continue
            try:
                frames = self._frames(lots, devices)
            except Exception:  # a failed read must not end the feed
                log.exception("live feed: reading %d lot totals failed", len(lots))
                continue
            for queue in list(self._subscribers):
                for frame in frames:
                    if queue.full():  # a slow client: drop its oldest, keep the newest
                        queue.get_nowait()
                    queue.put_nowait(frame)

    def _frames(self, lots: set[str], devices: set[str]) -> list[bytes]:
        now = time.time()
        with self._engine.connect() as conn:
            totals = [lot for lot in store.list_lots(conn) if lot["lot"] in lots]
            rows = conn.execute(
                select(
                    DeviceState.device_id,
                    Client.lot,
                    DeviceState.cars,
                    DeviceState.last_seen_at,
                    DeviceState.received_at,
                )
                .join(Client, Client.client_id == DeviceState.device_id)
                .where(DeviceState.device_id.in_(sorted(devices)))
            ).all()
        boards: dict[str, list[dict[str, Any]]] = {}
        for device_id, board_lot, cars, seen, received in rows:
            boards.setdefault(str(board_lot), []).append(
                {
                    "device_id": device_id,
                    "cars": cars,
                    "last_seen_at": seen,
                    "received_at": received,
                }
            )
        frames = []
        for lot in sorted(totals, key=lambda t: str(t["lot"])):
            self._seq += 1
            event = {**lot, "at": now, "boards": boards.get(lot["lot"], [])}
            data = json.dumps(event, separators=(",", ":"))
            # text/event-stream framing: https://html.spec.whatwg.org/#server-sent-events
            frames.append(f"id: {self._seq}\nevent: lot\ndata: {data}\n\n".encode())
        return frames
