"""Rollouts: a release to a set of boards, canaries first.

    canary   the canaries have the release as their target
    rolling  every canary ran the release, confirmed, and kept uploading for the whole
             canary wait: the rest have it as their target too
    done     every board of the rollout runs the release and has confirmed it (a board on
             trial may still roll back by itself)
    paused   a canary rolled back, refused the release or fell silent (no post for
             `silence_s`), or an operator paused it; `reason` says which
    aborted  targets withdrawn: boards keep what they run

`tick()` moves rollouts along; the service runs it every TICK_S and on each status read.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from provisioning.store import audit
from provisioning.store.models import DeviceAgent, DeviceState, Rollout

TICK_S = 1.0
ACTIVE = ("canary", "rolling")


def _agents(db: Session, ids: list[str]) -> dict[str, DeviceAgent]:
    rows = db.scalars(select(DeviceAgent).where(DeviceAgent.device_id.in_(ids))).all()
    return {r.device_id: r for r in rows}


def _seen(db: Session, ids: list[str]) -> dict[str, float | None]:
    rows = db.execute(
        select(DeviceState.device_id, DeviceState.last_seen_at).where(
            DeviceState.device_id.in_(ids)
        )
    ).all()
    return {d: t for d, t in rows}


def _pause(db: Session, r: Rollout, reason: str, now: float) -> None:
    r.state, r.reason, r.updated_at = "paused", reason[:200], now
    audit.record(db, "rollout", "rollout.pause", str(r.id), {"reason": r.reason})


def set_targets(db: Session, ids: list[str], version: str | None, actor: str) -> None:
    """Target `version` on each board (state `pending`, audited); None withdraws it."""
    now = time.time()
    agents = _agents(db, ids)
    for device_id in ids:
        row = agents.get(device_id) or DeviceAgent(device_id=device_id)
        row.target = version
        if version is not None and row.version != version:
            row.state, row.reason = "pending", None
            audit.record(db, actor, "agent.pending", device_id, {"target": version})
        row.updated_at = now
        db.add(row)


def start(
    db: Session,
    actor: str,
    version: str,
    devices: list[str],
    canary: int,
    canary_wait_s: float,
    silence_s: float,
) -> Rollout:
    """Start a rollout of `version` to `devices`: the first `canary` of them first."""
    canaries = devices[:canary]
    now = time.time()
    r = Rollout(
        version=version,
        devices=devices,
        canaries=canaries,
        canary_wait_s=canary_wait_s,
        silence_s=silence_s,
        state="canary" if canaries else "rolling",
        started_at=now,
        updated_at=now,
    )
    db.add(r)
    db.flush()
    set_targets(db, canaries or devices, version, actor)
    audit.record(
        db,
        actor,
        "rollout.start",
        str(r.id),
        {"version": version, "devices": len(devices), "canaries": canaries},
    )
    return r


def _tick_one(db: Session, r: Rollout, now: float) -> None:
    if r.state == "canary":
        agents = _agents(db, r.canaries)
        seen = _seen(db, r.canaries)
        for device_id in r.canaries:
            a = agents.get(device_id)
            if a is not None and a.target == r.version and a.state in ("rolled_back", "refused"):
                _pause(db, r, f"canary {device_id} {a.state}: {a.reason or 'no reason given'}", now)
                return
            last = seen.get(device_id)
            quiet_since = max(last or 0.0, r.started_at)
            if now - quiet_since > r.silence_s:
                _pause(db, r, f"canary {device_id} silent for {now - quiet_since:.0f} s", now)
                return
        ok = all(
            (a := agents.get(d)) is not None and a.version == r.version and a.state == "confirmed"
            for d in r.canaries
        )
        if not ok:
            r.canaries_ok_at = None
            return
        if r.canaries_ok_at is None:
            r.canaries_ok_at, r.updated_at = now, now
            return
        if now - r.canaries_ok_at >= r.canary_wait_s:
            rest = [d for d in r.devices if d not in r.canaries]
            set_targets(db, rest, r.version, "rollout")
            r.state, r.updated_at = "rolling", now
            audit.record(db, "rollout", "rollout.promote", str(r.id), {"devices": len(rest)})
    if r.state == "rolling":
        agents = _agents(db, r.devices)
        if all(
            (a := agents.get(d)) is not None and a.version == r.version and a.state == "confirmed"
            for d in r.devices
        ):
            r.state, r.updated_at = "done", now
            audit.record(db, "rollout", "rollout.done", str(r.id), {"version": r.version})


def tick(db: Session, now: float | None = None) -> None:
    """Move every active rollout along (in the caller's transaction)."""
    at = time.time() if now is None else now
    for r in db.scalars(select(Rollout).where(Rollout.state.in_(ACTIVE))).all():
        _tick_one(db, r, at)


def view(db: Session, r: Rollout) -> dict[str, Any]:
    """A rollout and each of its boards, for `rollout status`."""
    agents = _agents(db, r.devices)
    boards = []
    for d in r.devices:
        a = agents.get(d)
        boards.append(
            {
                "device_id": d,
                "canary": d in r.canaries,
                "version": a.version if a else None,
                "target": a.target if a else None,
                "state": a.state if a else None,
                "reason": a.reason if a else None,
            }
        )
    return {
        "id": r.id,
        "version": r.version,
        "state": r.state,
        "reason": r.reason,
        "canary_wait_s": r.canary_wait_s,
        "silence_s": r.silence_s,
        "started_at": r.started_at,
        "canaries_ok_at": r.canaries_ok_at,
        "boards": boards,
    }


def control(db: Session, actor: str, r: Rollout, action: str) -> None:
    """pause, resume or abort `r` (ValueError when the action does not apply)."""
    now = time.time()
    if action == "pause" and r.state in ACTIVE:
        r.state, r.reason = "paused", f"paused by {actor}"
    elif action == "resume" and r.state == "paused":
        agents = _agents(db, r.devices)
        rest = [d for d in r.devices if d not in r.canaries]
        promoted = any((a := agents.get(d)) is not None and a.target == r.version for d in rest)
        r.state, r.reason, r.canaries_ok_at = ("rolling" if promoted else "canary"), None, None
        # A resumed rollout waits afresh; the silence clock starts now.
        r.started_at = now
    elif action == "abort" and r.state not in ("done", "aborted"):
        agents = _agents(db, r.devices)
        pending = [d for d in r.devices if (a := agents.get(d)) and a.target == r.version]
        set_targets(db, pending, None, actor)
        r.state, r.reason = "aborted", f"aborted by {actor}"
    else:
        raise ValueError(f"cannot {action} a rollout that is {r.state}")
    r.updated_at = now
    audit.record(db, actor, f"rollout.{action}", str(r.id), None)


class Ticker:
    """Runs `tick()` every TICK_S in a thread of the service."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollouts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                with self.sessions.begin() as db:
                    tick(db)
            except Exception:  # noqa: BLE001, S110 (a busy database: the next tick retries)
                pass
