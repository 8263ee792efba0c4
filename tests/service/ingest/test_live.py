"""The live feed behind the dashboard's event stream: whole totals after a commit, one read
per broadcast, and a slow subscriber that never holds the others up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from sqlalchemy import Engine

from provisioning.service.ingest import live, store
from provisioning.service.ingest.schemas import CountsBatch
from provisioning.store import sql


def _events(queue: asyncio.Queue[bytes]) -> list[dict[str, object]]:
    frames = []
    while not queue.empty():
        frame = queue.get_nowait().decode()
        assert frame.startswith("id: ") and "\nevent: lot\ndata: " in frame
        frames.append(json.loads(frame.split("data: ", 1)[1]))
    return frames


async def _arrival(queue: asyncio.Queue[bytes]) -> None:
    """Until an event is queued (at most 2 s, the dashboard's bound)."""
    for _ in range(200):
        if not queue.empty():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no event within 2 s")


def test_totals_reach_every_subscriber_and_slow_ones_lose_the_oldest(
    engine: Engine, make_device: Callable[[str], str]
) -> None:
    device = make_device("north")

    def post(seq: int, cars: int) -> None:
        batch = CountsBatch([(seq, cars, None)], 1, None, None)
        with sql.transaction(engine) as tx:
            store.store_counts(tx, device, batch, 1_800_000_000.0 + seq, False)

    async def scenario() -> None:
        feed = live.LiveFeed(engine, interval_s=0.05)
        feed.touched("north", device)  # nobody listens: nothing is kept
        fast, slow = feed.subscribe(), feed.subscribe()
        assert feed.subscribers == 2
        post(1, 7)
        feed.touched("north", device)
        await _arrival(fast)
        (event,) = _events(fast)
        assert (event["lot"], event["cars"], event["devices"]) == ("north", 7, 1)
        assert event["boards"] == [
            {"device_id": device, "cars": 7, "last_seen_at": 1_800_000_001.0,
             "received_at": 1_800_000_001.0}
        ]  # fmt: skip
        # `slow` never reads: it keeps only the newest QUEUE_MAX events, `fast` gets all.
        for seq in range(2, live.QUEUE_MAX + 12):
            post(seq, seq)
            feed.touched("north", device)
            await _arrival(fast)
            assert [e["cars"] for e in _events(fast)] == [seq]
        assert slow.qsize() == live.QUEUE_MAX
        assert _events(slow)[-1]["cars"] == live.QUEUE_MAX + 11
        feed.unsubscribe(fast)
        feed.unsubscribe(slow)
        assert feed.subscribers == 0

    asyncio.run(scenario())
