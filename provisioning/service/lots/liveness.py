"""Whether a board is online, by its own posting period: the dashboard's status and the lot
API's `online` and `stale` (one rule, one place).

A board is offline when it has not posted for `OFFLINE_AFTER_POSTS` of its own posting periods
plus `OFFLINE_SLACK_S`. The period is the `interval_s` the board reports in its health
(`DEFAULT_INTERVAL_S` until it has reported one) times the number of readings its newest post
carried: a board that posts each reading at once posts every `interval_s`; one that batches
(`upload_every_s`) carries that many readings per post, and its health says nothing else about
how often it posts. A board on a 5 s interval is offline 25 s after it went quiet, one on 300 s
after 615 s, one that never said after 135 s. An offline board's count is stale: it stays in its
lot's total (a dead sensor does not empty the spaces it watched, and a gate board's share is the
cars that came in through it), so the dashboard, the API and the MQTT total stay one number.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, func, select

from provisioning.store.models import DeviceState, Reading

DEFAULT_INTERVAL_S = 60
OFFLINE_AFTER_POSTS = 2
OFFLINE_SLACK_S = 15  # a post's own time on a slow link, and a first retry
# Readings of a board's newest post that are counted: bounds the scan on (device_id, seq) per
# board. The agent posts at most `batch_max` (20 by default); a board that batches more is
# taken to post every 64 readings, which two periods of slack still cover up to 128.
NEWEST_POST_ROWS = 64


def offline_after(health: dict[str, Any], post_readings: int) -> float:
    """Seconds of silence after which a board is offline (rules in the module docstring)."""
    interval = health.get("interval_s")
    interval = interval if isinstance(interval, int) and interval > 0 else DEFAULT_INTERVAL_S
    return OFFLINE_AFTER_POSTS * interval * max(post_readings, 1) + OFFLINE_SLACK_S


def online(
    enabled: bool, last_seen_at: float | None, health: dict[str, Any], now: float, posted: int
) -> bool:
    """Enabled and heard from within `offline_after`."""
    window = offline_after(health, posted)
    return enabled and last_seen_at is not None and now - last_seen_at <= window


def post_readings(conn: Connection, ids: list[str]) -> dict[str, int]:
    """How many readings each device's newest post with new readings carried (they share its
    `received_at`); read through the (device_id, seq) index, bounded below the newest seq."""
    if not ids:
        return {}
    rows = conn.execute(
        select(Reading.device_id, func.count())
        .join(
            DeviceState,
            and_(
                DeviceState.device_id == Reading.device_id,
                Reading.seq <= DeviceState.last_seq,
                Reading.seq > DeviceState.last_seq - NEWEST_POST_ROWS,
                Reading.received_at == DeviceState.received_at,
            ),
        )
        .where(Reading.device_id.in_(ids))
        .group_by(Reading.device_id)
    )
    return {str(device_id): int(n) for device_id, n in rows}
