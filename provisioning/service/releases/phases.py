"""Phased rollouts, the pure part: which boards each phase takes and whether the next may start.

Boards are ordered by a stable hash of their device id (SHA-256), and phase k takes the first
`counts[k]` of that order: the same boards whatever order they were named in, and the same
groups after a pause and a resume.

The decision compares the phase's boards (those that run the release) with the boards still on
the old release over the same period, and is written so that what affects both alike (a lot's
power cut, a WiFi outage) does not stop a rollout:

- crash rate: the share of a group's boards that reported a crash of the version they run
  during the period (a crash-free rate of board-periods, as crash-free hours with one period);
  the phase may be at most `max_crash_rate` above the old boards' (an absolute difference);
- online share: the share of a group's boards heard from within the silence limit; the phase's
  must be at least `min_online` times the old boards' (a ratio).

Equal is never worse. With no old boards left to compare with, the baseline is no crash and
every board online.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MAX_PHASES = 20
_PERCENT = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,3})?)%")  # matched whole (fullmatch)
# A refusal after downloads the service or a load balancer shed (429/503) is not the release's
# failure (device/ota.py reports "failed 3 times: 503").
_SHED = re.compile(r"\b(?:429|503)\b")
EPSILON = 1e-9


def order(devices: Iterable[str]) -> list[str]:
    """`devices` in the order of the stable hash that assigns them to phases."""
    return sorted(set(devices), key=lambda d: (hashlib.sha256(d.encode()).hexdigest(), d))


def counts(phases: Sequence[int | str], boards: int) -> list[int]:
    """Cumulative board counts of `phases` ("N" boards or "P%" of `boards`, rounded up) for a
    rollout to `boards` boards: increasing, each phase at least one new board, the last one
    every board (a final 100% is added when missing). ValueError naming a bad phase."""
    if not phases or len(phases) > MAX_PHASES:
        raise ValueError(f"give 1 to {MAX_PHASES} phases, e.g. 1,5%,25%,100%")
    out: list[int] = []
    for phase in phases:
        if type(phase) is int and phase >= 1:
            n = phase
        elif isinstance(phase, str) and phase.isascii() and phase.isdigit() and int(phase) >= 1:
            n = int(phase)
        elif isinstance(phase, str) and (found := _PERCENT.fullmatch(phase)):
            share = float(found[1])
            if not 0 < share <= 100:
                raise ValueError(f"phase {phase}: a share is more than 0% and at most 100%")
            n = max(1, math.ceil(boards * share / 100 - EPSILON))
        else:
            raise ValueError(f"phase {phase!r}: a number of boards (1 or more) or a share (5%)")
        n = min(n, boards)
        if out and n <= out[-1]:
            if n < out[-1]:
                raise ValueError(f"phase {phase}: phases only grow")
            continue  # the same boards as the previous phase (small fleets): one phase
        out.append(n)
    if not out or out[-1] < boards:
        out.append(boards)
    return out


def shed(reason: str | None) -> bool:
    """Whether a board's refusal was the service's doing (downloads refused with 429/503)."""
    return bool(reason and _SHED.search(reason))


@dataclass(frozen=True)
class Group:
    """A group of boards over a period: how many, how many crashed, how many are online."""

    boards: int
    crashed: int
    online: int

    def crash_rate(self) -> float:
        return self.crashed / self.boards if self.boards else 0.0

    def online_share(self) -> float:
        return self.online / self.boards if self.boards else 1.0

    def text(self) -> str:
        return f"{self.crashed} of {self.boards} crashed, {self.online} of {self.boards} online"


def decide(phase: Group, rest: Group, max_crash_rate: float, min_online: float) -> str | None:
    """None when the phase is no worse than the old boards by more than the thresholds; else
    the reason to pause."""
    crash, crash_rest = phase.crash_rate(), rest.crash_rate()
    if crash > crash_rest + max_crash_rate + EPSILON:
        return (
            f"crash rate {crash:.2f} ({phase.crashed} of {phase.boards} boards) against "
            f"{crash_rest:.2f} on the old release: more than {max_crash_rate:.2f} worse"
        )
    online, online_rest = phase.online_share(), rest.online_share()
    if online < min_online * online_rest - EPSILON:
        return (
            f"online share {online:.2f} ({phase.online} of {phase.boards} boards) against "
            f"{online_rest:.2f} on the old release: below {min_online:.2f} of it"
        )
    return None
