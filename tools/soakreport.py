"""The soak's verdict: what the boards produced against what was stored and heard, and figures.

Checks (each one line, PASS or FAIL): readings produced (the boards' spools) = stored, 0 lost,
0 doubled; every stored reading heard over MQTT; disabled boards refused within 1 s; at most 2
token requests per board and none for a reboot; no 5xx outside the PostgreSQL outage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from tools.harness.proxy import Exchange

REFUSAL_BOUND_S = 1.0
TOKENS_PER_BOARD = 2


@dataclass
class Fault:
    name: str
    start: float  # s since the boards started
    end: float  # when the fault was removed
    healed: float | None  # s after `end` until the service was whole again (None: not seen)
    note: str


@dataclass
class Figures:
    boards: int
    duration: float
    faults: list[Fault]
    spools: dict[str, tuple[int, int, int]]  # client_id -> (head, dropped, next seq)
    stored: dict[str, tuple[int, int, int]]  # client_id -> (rows, distinct seqs, max seq + 1)
    heard: set[tuple[str, int]]
    tokens: dict[str, int]  # client_id -> tokens issued (audit log)
    tokens_before_reboot: dict[str, int]
    probe_tokens: int  # tokens the soak itself fetched for the disabled boards' probes
    rebooted: list[str]
    disabled: dict[str, float]  # client_id -> wall-clock time of the disable
    last_received: dict[str, float]  # client_id -> newest received_at
    refusal: list[float]  # s until an instance refused a disabled board's token
    exchanges: list[Exchange]
    pg_down: list[float]  # [stopped, all instances ready again] (monotonic)
    cpu_s: float  # instances' CPU seconds
    memory_mb: list[tuple[float, float]]  # per instance: (resident, peak resident)
    drained_s: float | None
    t0: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _readings(f: Figures) -> tuple[list[str], dict[str, int]]:
    """Problems per board, and the totals (produced, stored, lost, doubled, refused, dropped)."""
    problems: list[str] = []
    totals = Counter[str]()
    for client_id, (head, dropped, produced) in f.spools.items():
        rows, distinct, top = f.stored.get(client_id, (0, 0, 0))
        totals["produced"] += produced
        totals["stored"] += distinct
        totals["doubled"] += rows - distinct
        totals["dropped on the board"] += dropped
        if top > produced:
            problems.append(f"{client_id}: stored seq {top - 1} it never produced")
        if top != distinct:
            problems.append(f"{client_id}: {top - distinct} gaps in the stored seqs")
        if client_id in f.disabled:
            # Refused after the disable: still in its spool (not acknowledged), not lost.
            totals["refused (disabled boards)"] += produced - distinct
            if head > distinct:
                problems.append(f"{client_id}: acknowledged {head}, stored {distinct}")
        elif distinct != produced:
            totals["lost"] += produced - distinct
            problems.append(f"{client_id}: produced {produced}, stored {distinct}")
    totals["doubled"] += 0
    totals["lost"] += 0
    return problems, dict(totals)


def _said(body: bytes) -> str:
    """What a 5xx answer said, short: the service's OAuth error or the proxy's page title."""
    text = body.decode("utf-8", "replace")
    for mark in ('"error_description":"', '"error":"', "<h1>"):
        at = text.find(mark)
        if at >= 0:
            return text[at + len(mark) :].split('"')[0].split("<")[0][:80]
    return text[:60].strip() or "(no body)"


def build_report(f: Figures) -> tuple[bool, str]:
    """(every check held, the report text)."""
    checks: list[tuple[str, bool, str]] = []
    problems, totals = _readings(f)
    checks.append(
        (
            "produced = stored, 0 lost, 0 doubled",
            not problems and totals["lost"] == 0 and totals["doubled"] == 0,
            f"produced {totals['produced']}, stored {totals['stored']}, lost {totals['lost']}, "
            f"doubled {totals['doubled']}, refused after disable "
            f"{totals.get('refused (disabled boards)', 0)}, dropped on boards "
            f"{totals['dropped on the board']}",
        )
    )
    unheard = 0
    for client_id, (_rows, distinct, _top) in f.stored.items():
        unheard += sum((client_id, s) not in f.heard for s in range(distinct))
    checks.append(
        ("MQTT covers every stored reading", unheard == 0, f"{unheard} stored, never heard")
    )
    if f.disabled:
        worst = max(f.refusal) if f.refusal else float("inf")
        late = [f.last_received.get(c, 0) - t for c, t in f.disabled.items()]
        checks.append(
            (
                f"disabled boards refused within {REFUSAL_BOUND_S:.0f} s",
                worst <= REFUSAL_BOUND_S,
                f"slowest instance {worst:.2f} s (median {percentile(f.refusal, 0.5):.2f} s); "
                f"last reading accepted {max(late):+.1f} s after the disable",
            )
        )
    over = {c: n for c, n in f.tokens.items() if n - (c in f.disabled) > TOKENS_PER_BOARD}
    per_reboot = sum(f.tokens.get(c, 0) - f.tokens_before_reboot.get(c, 0) for c in f.rebooted)
    counts = Counter(f.tokens.get(c, 0) for c in f.spools)
    checks.append(
        (
            f"token requests per board <= {TOKENS_PER_BOARD}, none per reboot",
            not over and per_reboot == 0,
            f"tokens per board {dict(sorted(counts.items()))} (disabled boards: +1 probe each), "
            f"over the bound {len(over)}, issued for {len(f.rebooted)} reboots {per_reboot}",
        )
    )
    down = f.pg_down if len(f.pg_down) == 2 else [0.0, 0.0]
    errors = [e for e in f.exchanges if e.status >= 500]
    outside = [e for e in errors if not down[0] <= e.at <= down[1]]
    # Where the others came from: status and the 10 s of the run they fell in (t from the
    # boards' start, as the fault schedule prints it).
    when = Counter(
        (e.status, int((e.at - f.t0) // 10 * 10), e.path.split("?")[0], _said(e.body))
        for e in outside
    )
    where = "; ".join(
        f"{n} x {status} {path} at t={t}s: {said}"
        for (status, t, path, said), n in sorted(when.items())
    )
    checks.append(
        (
            "no 5xx except while PostgreSQL is down",
            not outside,
            f"5xx while PostgreSQL down {len(errors) - len(outside)}, otherwise {len(outside)}"
            + (f" ({where})" if where else ""),
        )
    )
    broken = [x.name for x in f.faults if x.note.startswith("fault failed")]
    checks.append(("every fault injected", not broken, f"failed: {broken}" if broken else "yes"))
    posts = [e for e in f.exchanges if e.path.startswith("/v1/counts")]
    ok_posts = [e.elapsed * 1000 for e in posts if e.status == 200]
    statuses = Counter(e.status for e in posts)
    readings = max(totals["stored"], 1)
    lines = [
        f"soak: {f.boards} boards, {f.duration:.0f} s, {len(f.faults)} faults",
        "",
        "checks",
        *(f"  {'PASS' if ok else 'FAIL'}  {name}: {figure}" for name, ok, figure in checks),
        "",
        "figures",
        f"  posts through the boards' link: {len(posts)} ({dict(sorted(statuses.items()))})",
        f"  ingest latency (board side, via HAProxy): p50 {percentile(ok_posts, 0.5):.1f} ms, "
        f"p99 {percentile(ok_posts, 0.99):.1f} ms",
        f"  instance CPU: {f.cpu_s:.1f} s, {f.cpu_s / readings * 1000:.2f} s per 1,000 readings",
        "  memory per instance (RSS / peak): "
        + ", ".join(f"{rss:.0f}/{peak:.0f} MB" for rss, peak in f.memory_mb),
        "  drain after the run: "
        + (f"{f.drained_s:.0f} s" if f.drained_s is not None else "not drained"),
        "",
        "faults (t from the boards' start; healed: s after the fault was removed)",
    ]
    for fault in f.faults:
        healed = f"{fault.healed:.1f} s" if fault.healed is not None else "not seen"
        lines.append(
            f"  t={fault.start:5.0f}-{fault.end:5.0f}s  {fault.name:<22} healed {healed:>9}"
            f"  ({fault.note})"
        )
    if problems:
        lines += ["", "problems (first 20)", *(f"  {p}" for p in problems[:20])]
    return all(ok for _n, ok, _f in checks), "\n".join(lines)
