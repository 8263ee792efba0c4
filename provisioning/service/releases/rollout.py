"""Rollouts: a release to a set of boards in phases, each started only on the previous one's
health (the decision itself: service/releases/phases.py).

    canary   the first phase runs (its boards have the release as their target)
    rolling  a later phase runs
    done     every board of the rollout runs the release and has confirmed it (a board on
             trial may still roll back by itself)
    paused   a phase board rolled back or refused the release, or the phase was worse than the
             boards still on the old release by more than the thresholds, or an operator paused
             it; `reason` says which
    aborted  targets withdrawn: boards keep what they run, or, with rollback, the boards that
             took the release get the signed rollback release of what they ran before

A phase ends when each of its boards confirmed the release, fell silent (no post for
`silence_s`: it counts as offline) or had its download shed by the service (429/503: not the
release's failure, the board stays out of the comparison); it has then run the release for the
phase wait when the decision is made. Boards get their target a few at a time (`parallel` at
once, downloading), so that a phase of hundreds never makes the service shed a download.

`tick()` moves rollouts along; the service runs it every TICK_S and on each status read.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from provisioning.service.releases import phases as ph
from provisioning.store import audit
from provisioning.store.models import CrashReport, DeviceAgent, DeviceState, Release, Rollout

TICK_S = 1.0
ACTIVE = ("canary", "rolling")
DEFAULT_PARALLEL = 25
_IN_FLIGHT = ("pending", "downloading")


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


def _shed(a: DeviceAgent) -> bool:
    return a.state == "refused" and ph.shed(a.reason)


def _counts(r: Rollout) -> list[int]:
    # A rollout started before phases: its canaries, then everyone.
    if r.phases:
        return list(r.phases)
    return ph.counts([len(r.canaries), "100%"] if r.canaries else ["100%"], len(r.devices))


def _phase(r: Rollout) -> int:
    return r.phase if r.phase is not None else (0 if r.state == "canary" else 1)


def start(
    db: Session,
    actor: str,
    version: str,
    devices: list[str],
    phases: list[int | str],
    phase_wait_s: float,
    silence_s: float,
    max_crash_rate: float = 0.05,
    min_online: float = 0.9,
    parallel: int = DEFAULT_PARALLEL,
) -> Rollout:
    """Start a rollout of `version` to `devices` in `phases` (ValueError for bad phases)."""
    ordered = ph.order(devices)
    counts = ph.counts(phases, len(ordered))
    agents = _agents(db, ordered)
    now = time.time()
    r = Rollout(
        version=version,
        devices=ordered,
        canaries=ordered[: counts[0]] if len(counts) > 1 else [],
        canary_wait_s=phase_wait_s,
        silence_s=silence_s,
        state="canary" if len(counts) > 1 else "rolling",
        started_at=now,
        updated_at=now,
        phases=counts,
        phase=0,
        phase_started_at=now,
        max_crash_rate=max_crash_rate,
        min_online=min_online,
        parallel=parallel,
        from_versions={d: (a.version if (a := agents.get(d)) else None) for d in ordered},
    )
    db.add(r)
    db.flush()
    audit.record(
        db,
        actor,
        "rollout.start",
        str(r.id),
        {"version": version, "devices": len(ordered), "phases": counts},
    )
    _offer(db, r, now)
    return r


def _offer(db: Session, r: Rollout, now: float) -> None:
    """Give the current phase's boards the release as their target, at most `parallel` of the
    rollout's boards downloading at once (a board silent for `silence_s` frees its place)."""
    members = r.devices[: _counts(r)[_phase(r)]]
    agents = _agents(db, members)
    waiting = [d for d in members if (a := agents.get(d)) is None or a.target != r.version]
    if not waiting:
        return
    busy = sum(
        1
        for d in members
        if (a := agents.get(d)) is not None
        and a.target == r.version
        and a.version != r.version
        and a.state in _IN_FLIGHT
        and now - (a.updated_at or 0.0) < r.silence_s
    )
    room = max((r.parallel or DEFAULT_PARALLEL) - busy, 0)
    # Boards that run the release already need no download.
    ready = [d for d in waiting if (a := agents.get(d)) is not None and a.version == r.version]
    take = ready + [d for d in waiting if d not in ready][:room]
    if take:
        set_targets(db, take, r.version, "rollout")


def _crashed(db: Session, ids: list[str], since: float, version: str, on: bool) -> set[str]:
    """The boards of `ids` that reported a crash since `since` of `version` (on) or of
    another version (not on); a report without the version counts for the one that sent it."""
    crashed = func.coalesce(CrashReport.version, CrashReport.running)
    match = crashed == version if on else crashed != version
    rows = db.scalars(
        select(CrashReport.device_id)
        .where(CrashReport.device_id.in_(ids), CrashReport.at >= since, match)
        .distinct()
    ).all()
    return set(rows)


def groups(db: Session, r: Rollout, now: float) -> tuple[ph.Group, ph.Group, list[str]]:
    """The current phase's boards that were offered the release, the boards still on the old
    release, and the phase's boards whose download the service shed.

    A board silent since before the phase started is in neither group: its silence has
    nothing to do with the release (a phase board gets its offer in the answer to a post)."""
    members = set(r.devices[: _counts(r)[_phase(r)]])
    agents = _agents(db, r.devices)
    seen = _seen(db, r.devices)
    since = r.phase_started_at or r.started_at
    heard = {d for d in r.devices if (seen.get(d) or 0.0) >= since}
    shed = [d for d in r.devices if d in members and (a := agents.get(d)) and _shed(a)]
    phase = [d for d in r.devices if d in members and d not in shed and d in heard]
    rest = [
        d
        for d in r.devices
        if d not in members and d in heard and (a := agents.get(d)) and a.version != r.version
    ]

    def group(ids: list[str], on: bool) -> ph.Group:
        online = sum(1 for d in ids if now - (seen.get(d) or 0.0) <= r.silence_s)
        crashed = _crashed(db, ids, since, r.version, on) if ids else set()
        return ph.Group(len(ids), len(crashed), online)

    return group(phase, True), group(rest, False), shed


def _tick_one(db: Session, r: Rollout, now: float) -> None:
    counts = _counts(r)
    k = _phase(r)
    members = r.devices[: counts[k]]
    agents = _agents(db, members)
    seen = _seen(db, members)
    who = "canary" if k == 0 and len(counts) > 1 else f"phase {k + 1} board"
    settled = True
    for device_id in members:
        a = agents.get(device_id)
        if a is not None and a.target == r.version and a.state in ("rolled_back", "refused"):
            if _shed(a):
                continue  # the service's doing, not the release's
            _pause(db, r, f"{who} {device_id} {a.state}: {a.reason or 'no reason given'}", now)
            return
        confirmed = a is not None and a.version == r.version and a.state == "confirmed"
        quiet_since = max(seen.get(device_id) or 0.0, r.started_at)
        if not confirmed and now - quiet_since <= r.silence_s:
            settled = False
    _offer(db, r, now)
    if not settled:
        r.canaries_ok_at = None
        return
    if k == len(counts) - 1:
        everyone = _agents(db, r.devices)
        if all(
            (a := everyone.get(d)) is not None
            and ((a.version == r.version and a.state == "confirmed") or _shed(a))
            for d in r.devices
        ):
            r.state, r.updated_at = "done", now
            audit.record(db, "rollout", "rollout.done", str(r.id), {"version": r.version})
        return
    if r.canaries_ok_at is None:
        r.canaries_ok_at, r.updated_at = now, now
        return
    if now - r.canaries_ok_at < r.canary_wait_s:
        return
    phase, rest, _ = groups(db, r, now)
    why = ph.decide(phase, rest, r.max_crash_rate or 0.0, r.min_online or 0.0)
    if phase.boards == 0:
        why = "no board of the phase was heard from since it started: nothing to judge by"
    if why is not None:
        _pause(db, r, f"phase {k + 1}: {why}", now)
        return
    r.phase, r.phase_started_at, r.canaries_ok_at = k + 1, now, None
    r.state, r.updated_at = "rolling", now
    audit.record(
        db, "rollout", "rollout.promote", str(r.id), {"phase": k + 2, "devices": counts[k + 1]}
    )
    _offer(db, r, now)


def tick(db: Session, now: float | None = None) -> None:
    """Move every active rollout along (in the caller's transaction)."""
    at = time.time() if now is None else now
    # Several instances tick the same rollouts: the row lock (PostgreSQL; SQLite has one
    # writer anyway) lets one move each rollout at a time, the others skip it this turn, so
    # no phase is promoted twice and no more than `parallel` boards are offered the release.
    if db.get_bind().dialect.name == "sqlite":
        # The SQLite driver begins a transaction at the first write, after the reads: two ticks
        # (the ticker, a status read) could both move a rollout on from the same state. A
        # no-op write first takes the database's write lock, so the second reads the first's
        # outcome.
        touch = update(Rollout).where(Rollout.state.in_(ACTIVE))
        db.execute(touch.values(updated_at=Rollout.updated_at))
    active = select(Rollout).where(Rollout.state.in_(ACTIVE)).with_for_update(skip_locked=True)
    for r in db.scalars(active).all():
        _tick_one(db, r, at)


def view(db: Session, r: Rollout) -> dict[str, Any]:
    """A rollout, its phases, the current phase's health against the old boards', and each of
    its boards, for `rollout status`."""
    agents = _agents(db, r.devices)
    counts = _counts(r)
    k = _phase(r)
    boards = []
    for i, d in enumerate(r.devices):
        a = agents.get(d)
        boards.append(
            {
                "device_id": d,
                "canary": d in r.canaries,
                "phase": next(n for n, c in enumerate(counts) if i < c) + 1,
                "version": a.version if a else None,
                "target": a.target if a else None,
                "state": a.state if a else None,
                "reason": a.reason if a else None,
                "from_version": (r.from_versions or {}).get(d),
            }
        )
    now = time.time()
    phase, rest, shed = groups(db, r, now)
    # A board that rolled back, or refused what it checked, failed for the release's sake.
    failed = sum(
        1
        for a in agents.values()
        if a.target == r.version and a.state in ("rolled_back", "refused") and not _shed(a)
    )
    return {
        "id": r.id,
        "version": r.version,
        "state": r.state,
        "reason": r.reason,
        "phases": counts,
        "phase": k + 1,
        "phase_started_at": r.phase_started_at,
        "phase_wait_s": r.canary_wait_s,
        "canary_wait_s": r.canary_wait_s,
        "max_crash_rate": r.max_crash_rate,
        "min_online": r.min_online,
        "parallel": r.parallel or DEFAULT_PARALLEL,
        "silence_s": r.silence_s,
        "started_at": r.started_at,
        "canaries_ok_at": r.canaries_ok_at,
        "health": {"phase": _group(phase), "old": _group(rest)},
        # What went wrong, by whose doing: the release (a board rolled back or refused what it
        # checked) or the service (a download it shed).
        "failures": {"release": failed, "service": len(shed)},
        "boards": boards,
    }


def _group(g: ph.Group) -> dict[str, Any]:
    return {
        "boards": g.boards,
        "crashed": g.crashed,
        "online": g.online,
        "crash_rate": round(g.crash_rate(), 4),
        "online_share": round(g.online_share(), 4),
    }


def control(db: Session, actor: str, r: Rollout, action: str, rollback: bool = False) -> None:
    """pause, resume or abort `r` (ValueError when the action does not apply). Abort with
    `rollback` targets the boards that took the release at the version each ran before, which
    must be published as a rollback release (the boards check its signature and its flag)."""
    now = time.time()
    if action == "pause" and r.state in ACTIVE:
        r.state, r.reason = "paused", f"paused by {actor}"
    elif action == "resume" and r.state == "paused":
        # The same groups (the hash order is stored); the current phase is watched afresh.
        r.state = "canary" if _phase(r) == 0 and len(_counts(r)) > 1 else "rolling"
        r.reason, r.canaries_ok_at = None, None
        r.started_at = r.phase_started_at = now
    elif action == "abort" and r.state != "aborted" and (r.state != "done" or rollback):
        back = _rollback(db, actor, r) if rollback else 0
        agents = _agents(db, r.devices)
        pending = [d for d in r.devices if (a := agents.get(d)) and a.target == r.version]
        set_targets(db, pending, None, actor)
        r.state = "aborted"
        r.reason = f"aborted by {actor}" + (f"; {back} boards sent back" if rollback else "")
    else:
        raise ValueError(f"cannot {action} a rollout that is {r.state}")
    r.updated_at = now
    audit.record(db, actor, f"rollout.{action}", str(r.id), {"rollback": rollback})


def _rollback(db: Session, actor: str, r: Rollout) -> int:
    """Target the boards that run the release (or installed it) at the version each ran
    before; ValueError naming a rollback release that is not published."""
    agents = _agents(db, r.devices)
    olds = r.from_versions or {}
    moved = {
        d: old
        for d in r.devices
        if (a := agents.get(d)) is not None
        and (old := olds.get(d)) is not None
        and old != r.version
        and (a.version == r.version or a.state == "downloading")
    }
    for old in sorted(set(moved.values())):
        release = db.get(Release, old)
        if release is None or not release.rollback:
            raise ValueError(
                f"no rollback release {old} published: build it with `parkctl release build "
                f"--version {old} --rollback` and publish it, then abort again"
            )
    for old in sorted(set(moved.values())):
        set_targets(db, [d for d, v in moved.items() if v == old], old, actor)
    return len(moved)


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
