"""`make fuzz`: schemathesis against the real service, from its own OpenAPI document.

For SQLite and then PostgreSQL: start `parkctl serve` (with `PARK_API_DOCS=1`, so the document
is served, and failure limits raised so the token endpoint's parsing is what gets exercised),
register a device and an operator, fetch their tokens, and run `st run` with every check on
every operation (tools/fuzz_hooks.py gives each operation its token). Prints the cases run and
the outcome per database (and the service's own count of server errors and tracebacks); exit
status 1 if any check failed on any case.

    .venv/bin/python -m tools.fuzz [--max-examples N] [--db sqlite|postgresql ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tools.harness.clients import register_devices
from tools.harness.server import ServiceProcess
from tools.harness.services import postgres_database

REPO = Path(__file__).resolve().parents[1]

GRANT = {"grant_type": "client_credentials"}
LIMITS = {
    "PARK_API_DOCS": "1",
    "PARK_TOKEN_RATE_BURST": "1000000",
    "PARK_AUTH_FAIL_SOURCE_BURST": "1000000",
    "PARK_AUTH_FAIL_CLIENT_BURST": "1000000",
    "PARK_INGEST_READINGS_BURST": "1000000",
}


def _token(url: str, creds: tuple[str, str], **params: str) -> str:
    response = httpx.post(f"{url}/oauth/token", data={**GRANT, **params}, auth=creds, timeout=30)
    response.raise_for_status()
    return str(response.json()["access_token"])


def _operator(data_dir: Path, db: str | None) -> tuple[str, str]:
    args = ["admin", "create", "--data-dir", str(data_dir), "--name", "fuzz", "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "provisioning", *args, *(["--db", db] if db else [])],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    made = json.loads(out.stdout)
    return made["client_id"], made["client_secret"]


def fuzz(work: Path, name: str, db: str | None, max_examples: int) -> dict[str, Any]:
    """One `st run` against a fresh service on `db` (None: SQLite); the report's figures."""
    data_dir = work / name
    (device,) = register_devices(data_dir, 1, "fuzz-lot", db=db)
    operator = _operator(data_dir, db)
    with ServiceProcess(data_dir, db=db, env=LIMITS) as service:
        env = {
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tools.fuzz_hooks",
            "PYTHONPATH": str(REPO),
            "PARK_FUZZ_DEVICE_TOKEN": _token(service.url, device),
            "PARK_FUZZ_READER_TOKEN": _token(
                service.url, operator, audience="parkfleet-ingest", scope="counts:read"
            ),
            "PARK_FUZZ_ADMIN_TOKEN": _token(service.url, operator, audience="parkfleet-admin"),
            "PARK_FUZZ_PROTECTED": f"{device[0]},{operator[0]}",
        }
        command = [
            str(Path(sys.executable).with_name("st")),
            "--config-file",
            str(REPO / "tools" / "fuzz.toml"),
            "run",
            f"{service.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(max_examples),
            "--workers",
            "1",  # several threads trip a CPython 3.11 ast.parse bug inside hypothesis
            "--seed",
            "9",
            "--no-color",
        ]
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
        log = service.log()
    keep = os.environ.get("FUZZ_LOG")  # a directory for the whole report and service log
    if keep:
        Path(keep, f"{name}-st.log").write_text(run.stdout)
        Path(keep, f"{name}-service.log").write_text(log)
    print(run.stdout[-6000:])
    if run.stderr.strip():
        print(run.stderr[-3000:], file=sys.stderr)
    cases = re.search(r"([0-9]+) generated, (.*)", run.stdout)
    return {
        "db": name,
        "cases": int(cases.group(1)) if cases else 0,
        "outcome": cases.group(2).strip() if cases else "no summary",
        "exit": run.returncode,  # 0: every check passed on every case
        "server_errors": log.count("Exception in ASGI application"),
        "tracebacks": log.count("Traceback"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=200)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as name:
        work = Path(name)
        for db in args.db or ["sqlite", "postgresql"]:
            if db == "sqlite":
                results.append(fuzz(work, db, None, args.max_examples))
            else:
                with postgres_database() as url:
                    results.append(fuzz(work, db, url, args.max_examples))
    failed = False
    for result in results:
        print(json.dumps(result))
        failed |= result["exit"] != 0 or result["tracebacks"] > 0
    print(f"{sum(r['cases'] for r in results)} cases in all; " + ("FAILED" if failed else "clean"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
