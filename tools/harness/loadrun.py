"""One load-generator run against a service, with the CPU each side spent per request.

CPU per request (user + system time) is a figure other load on a shared machine disturbs far
less than requests per second, so every HTTP bench reports it beside its rates.
"""

from __future__ import annotations

from typing import Any

from tools.bench.loadgen import run_in_process
from tools.harness.procstat import tree_cpu_seconds
from tools.harness.server import ServiceProcess


def measured_load(
    service: ServiceProcess,
    requests: list[str],
    connections: int,
    seconds: float,
    *,
    replay: bool = True,
    warmup: float = 0.0,
    database_pid: int | None = None,
) -> dict[str, Any]:
    """Drive `service` for `seconds` (after `warmup`) over `connections` keep-alive connections.

    Without `replay` each request is sent at most once (fresh seqs). The result is the load
    generator's (tools/bench/loadgen.py) plus `cpu_us`: µs of CPU per sent request of the service's
    process tree (all its workers), of the load generator, and of the database's process tree
    when `database_pid` is given.
    """
    assert service.proc is not None
    spec = {
        "port": service.port,
        "requests": requests,
        "connections": connections,
        "duration": seconds,
        "warmup": warmup,
        "total": 10**9 if replay else len(requests),
    }
    pids = {"server": service.proc.pid}
    if database_pid is not None:
        pids["postgres"] = database_pid
    before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    result = run_in_process(spec)
    sent = max(1, result["sent"])
    cpu = {name: tree_cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    cpu["loadgen"] = result["cpu_s"]
    result["cpu_us"] = {name: round(spent / sent * 1e6) for name, spent in cpu.items()}
    return result
