"""Test-only helpers for the device tests: waiting, the nothing-lost check, and the runner for the
MicroPython test scripts in mp/. The launchers themselves live in tools/harness/agent.py."""

from __future__ import annotations

import re
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

from tools.harness.agent import micropython_env

MP_TESTS = Path(__file__).with_name("mp")


def wait_until(check: Any, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def assert_contiguous(seqs: list[int]) -> None:
    """Nothing lost (no gap from 0) and nothing doubled."""
    assert seqs, "no readings stored"
    assert seqs == list(range(len(seqs))), f"gaps or duplicates in {seqs}"


def run_cases(micropython: str, script: str, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """Run a MicroPython test script; returns {test name: "ok" or the failure text}."""
    proc = subprocess.run(
        [micropython, str(MP_TESTS / script)],
        cwd=cwd,
        env=micropython_env(env, with_device=True),
        capture_output=True,
        text=True,
        timeout=60,
    )
    results: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if m := re.match(r"ok (\w+)$", line):
            results[m[1]] = "ok"
        elif m := re.match(r"FAIL (\w+): (.*)$", line):
            results[m[1]] = m[2]
    if "done," not in proc.stdout:
        raise RuntimeError(f"{script} did not finish:\n{proc.stdout}\n{proc.stderr}")
    results["_output"] = proc.stdout + proc.stderr
    return results


def case_names(script: str) -> list[str]:
    """Test names defined in a MicroPython test script (for pytest parametrisation)."""
    return re.findall(r"^def (test_\w+)\(", (MP_TESTS / script).read_text(), re.M)


def write_old_spool(
    board: Path, n: int, head: int | None, dropped: int = 0, ts0: int = 0
) -> list[tuple[int, int, int]]:
    """The spool an agent from before gate readings left on a board: readings 0..n-1 as 12-byte
    records ("<IIHH": seq, ts, cars, check) in segments of 256 seqs, and, when it had an answer,
    the 12-byte pointer ("<III": head, dropped, cars of the last acknowledged) with the
    acknowledged segments gone. Encoded here from that agent's device/spool.py (git history), not
    by device/spoolold.py. Returns the (seq, cars, ts) not yet delivered (ts 0: unknown)."""
    root = board / "spool.d"
    root.mkdir(exist_ok=True)
    pending = []
    for seq in range(n):
        ts = 0 if seq % 7 == 3 else ts0 + seq
        cars = (seq * 37) % 300
        check = (seq ^ (seq >> 16) ^ ts ^ (ts >> 16) ^ cars ^ 0x5A5A) & 0xFFFF
        if head is None or (seq // 256 + 1) * 256 > head:
            with (root / str(seq // 256)).open("ab") as f:
                f.write(struct.pack("<IIHH", seq, ts, cars, check))
        if seq >= (head or 0):
            pending.append((seq, cars, ts))
    if head is not None:
        (root / "ptr").write_bytes(struct.pack("<III", head, dropped, (head - 1) * 37 % 300))
    return pending
