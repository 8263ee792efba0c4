"""What an acknowledgement that survives a power cut costs.

SQLite with `synchronous=FULL` (the default now) syncs the WAL at every commit; `NORMAL` (the
former default) only survives a process crash. Two services run side by side on the same disk,
one of each, and the load generator drives them in alternating rounds, so both see the same
machine: one-reading posts from 64 devices (the group commit shares one sync among the posts of
an event-loop turn), and 500-reading batches from 8. The ratio is FULL over NORMAL; best round
of each (noise on a shared machine only ever slows things down).
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tools.bench.ingest import UNLIMITED_INGEST, counts_requests, fetch_tokens, measured
from tools.harness.clients import register_devices
from tools.harness.server import ServiceProcess

REPO = Path(__file__).resolve().parents[2]

ROUNDS = 3
MODES = ("NORMAL", "FULL")
SHAPES = ((64, 1, 300), (8, 500, 40))  # connections (= devices), readings per post, posts each


def _services(stack: ExitStack, tmp: Path, devices: int) -> dict[str, tuple[ServiceProcess, str]]:
    started = {}
    for mode in MODES:
        data_dir = tmp / f"{mode.lower()}-{devices}"
        creds = register_devices(data_dir, devices, "bench-lot")
        args = ["--token-rate-burst", "1000000000", "--log-level", "warning"]
        # 500-reading batches go far above the per-device readings rate: lifted, as in the
        # ingest bench, so both modes store every post instead of answering 429.
        env = {"PARK_SQLITE_SYNCHRONOUS": mode, **UNLIMITED_INGEST}
        service = stack.enter_context(ServiceProcess(data_dir, extra_args=args, env=env))
        started[mode] = (service, ",".join(fetch_tokens(service.url, creds)))
    return started


def run() -> list[dict[str, Any]]:
    """Rows: posts/s (and readings/s) with NORMAL and FULL, and their ratio."""
    rows: list[dict[str, Any]] = []
    # On the repository's disk, never a tmpfs: a sync there costs nothing and proves nothing.
    with tempfile.TemporaryDirectory(dir=REPO) as name, ExitStack() as stack:
        for devices, batch, posts in SHAPES:
            services = _services(stack, Path(name), devices)
            best: dict[str, dict[str, Any]] = {}
            for n in range(ROUNDS):
                for mode in MODES:
                    service, joined = services[mode]
                    host = f"127.0.0.1:{service.port}"
                    requests = counts_requests(
                        host, joined.split(","), posts, batch, first_seq=n * posts * batch
                    )
                    result = measured(service, requests, replay=False, connections=devices)
                    if mode not in best or result["rps"] > best[mode]["rps"]:
                        best[mode] = result
            what = "1 reading/post, posts/s" if batch == 1 else f"{batch}-reading batches, posts/s"
            for mode in MODES:
                result = best[mode]
                rows.append(
                    {
                        "bench": "durability",
                        "metric": f"POST /v1/counts {what}, SQLite synchronous={mode}",
                        "value": result["rps"],
                        "p50_ms": result["p50_ms"],
                        "p99_ms": result["p99_ms"],
                        "ok": set(result["statuses"]) == {"200"},
                    }
                )
            normal, full = best["NORMAL"]["rps"], best["FULL"]["rps"]
            rows.append(
                {
                    "bench": "durability",
                    "metric": f"FULL / NORMAL, {what} ({devices} connections)",
                    "value": full,
                    "baseline": normal,
                    "ratio": round(full / normal, 3) if normal else 0.0,
                }
            )
    return rows


if __name__ == "__main__":
    from rich.console import Console

    Console().print(run())
