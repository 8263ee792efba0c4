"""CPU seconds and memory of processes, from Linux /proc: the cost of a run that other load on
the machine disturbs far less than requests per second do."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        # The command name may hold spaces or parentheses: split after its closing one.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process so far (fields 14 and 15); 0.0 once it is gone."""
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / _TICK


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU of `pid` and every descendant, live or already reaped (a worker process of a
    `--workers N` service; PostgreSQL's backends, which come and go with connections)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # Own user + system, and the user + system of children it has waited for (fields 16, 17).
    total = sum(int(f) for f in fields[11:15]) / _TICK
    return total + sum(tree_cpu_seconds(child) for child in _children(pid))


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) MB of a live process."""
    got = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in got:
                got[name] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return got["VmRSS"], got["VmHWM"]
