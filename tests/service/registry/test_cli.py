"""`parkctl admin create` and `parkctl device ...` as an operator runs them, against the real
service in its own process: the whole device lifecycle, the token cache, no secret leaks.

The first and last commands run as real `parkctl` processes (entry point, exit code, error
message); those between run in-process (tests/parkctl/clirunner.py), which starts nothing new but
reads the same environment and the same on-disk token cache."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.parkctl.clirunner import Invocation, invoke
from tools.harness.parkctl import parkctl as run_parkctl
from tools.harness.server import ServiceProcess

GRACE_S = 2  # PARK_SECRET_GRACE_S for this service: long enough to try both secrets


def parkctl(*args: str, env: dict[str, str], ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = run_parkctl(*args, env=env, timeout=60)
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def parkctl_json(*args: str, env: dict[str, str]) -> Any:
    return json.loads(parkctl(*args, "--json", env=env).stdout)


def device_token(http: httpx.Client, client_id: str, secret: str) -> httpx.Response:
    return http.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )


def test_device_lifecycle_through_the_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "PARK_SECRET_GRACE_S": str(GRACE_S), "PARK_CACHE_DIR": str(tmp_path)}
    env["PARK_METRICS_PUBLIC"] = "1"  # read below to count operator tokens
    env.pop("PARK_SERVER", None)
    outputs: list[str] = []

    def run(*args: str) -> Invocation:
        result = invoke(list(args), env=cli_env)
        assert result.exit_code == 0, (result.output, result.exception)
        outputs.extend((result.stdout, result.stderr))
        return result

    def run_json(*args: str) -> Any:
        return json.loads(run(*args, "--json").stdout)

    with ServiceProcess(data, env=env) as server, server.client() as http:
        created = parkctl_json("admin", "create", "--data-dir", str(data), env=env)
        assert set(created) == {"client_id", "client_secret"}
        cli_env = {
            **env,
            "PARK_CLIENT_ID": created["client_id"],
            "PARK_CLIENT_SECRET": created["client_secret"],
        }
        server_flag = ("--server", server.url)

        device = run_json(
            "device", "register", "--lot", "north", "--name", "Gate 1",
            "--mac", "AA-BB-CC-00-00-01", *server_flag,
        )  # fmt: skip
        client_id, first_secret = device["client_id"], device["client_secret"]
        assert device["mac"] == "aa:bb:cc:00:00:01"
        # PARK_SERVER works as well as --server.
        cli_env["PARK_SERVER"] = server.url
        listed = run_json("device", "list", "--lot", "north")
        assert [d["client_id"] for d in listed] == [client_id]
        assert "client_secret" not in json.dumps(listed)
        human = run("device", "list").stdout
        assert client_id in human and "Gate 1" in human

        assert run_json("device", "disable", client_id)["enabled"] is False
        refused = device_token(http, client_id, first_secret)
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        assert run_json("device", "enable", client_id)["enabled"] is True
        assert device_token(http, client_id, first_secret).status_code == 200

        rotated = run_json("device", "rotate-secret", client_id)
        second_secret = rotated["client_secret"]
        assert rotated["previous_secret_expires_at"] <= time.time() + GRACE_S
        assert device_token(http, client_id, first_secret).status_code == 200  # grace
        assert device_token(http, client_id, second_secret).status_code == 200
        time.sleep(max(0.0, rotated["previous_secret_expires_at"] - time.time()) + 0.2)
        after_grace = device_token(http, client_id, first_secret)
        assert after_grace.status_code == 401 and after_grace.json()["error"] == "invalid_client"
        assert device_token(http, client_id, second_secret).status_code == 200

        run("device", "delete", client_id)
        assert device_token(http, client_id, second_secret).status_code == 401
        missing = parkctl("device", "show", client_id, env=cli_env, ok=False)
        outputs.extend((missing.stdout, missing.stderr))
        assert missing.returncode == 1
        assert f"no device with client_id '{client_id}'" in missing.stderr

        # Eight CLI runs, one operator token: the rest came from the on-disk cache.
        metrics = http.get("/metrics").text
        assert 'parkfleet_tokens_issued_total{audience="parkfleet-admin"} 1.0' in metrics
        cache = tmp_path / "tokens.json"
        assert oct(cache.stat().st_mode & 0o777) == "0o600"

    secrets = [created["client_secret"], first_secret, second_secret]
    db_bytes = b"".join(p.read_bytes() for p in data.glob("parkfleet.db*"))
    for secret in secrets:
        assert secret.encode() not in db_bytes
        assert secret not in server.log()
        assert secret not in cache.read_text()
    # Secrets reach stdout only where they are shown once: register and rotate-secret.
    for secret in (first_secret, second_secret):
        assert sum(secret in out for out in outputs) == 1
    assert not any(created["client_secret"] in out for out in outputs)


def test_admin_create_on_postgresql_stores_only_a_hash(pg_url: str, tmp_path: Path) -> None:
    # In-process (CliRunner): the lifecycle test above already covers the real process.
    from sqlalchemy import create_engine, text

    from provisioning.common.errors import ParkctlError

    env = {**os.environ, "PARK_DATA_DIR": str(tmp_path / "data")}
    result = invoke(["admin", "create", "--db", pg_url, "--name", "ci bot"], env=env)
    assert result.exit_code == 0, result.output
    assert "shown only this once" in result.stderr
    line = next(x for x in result.stdout.splitlines() if "PARK_CLIENT_SECRET=" in x)
    secret = line.split("=", 1)[1].strip()
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT kind, name, secret_hash FROM clients")).one()
            actions = conn.execute(text("SELECT action, actor FROM audit_log")).all()
    finally:
        engine.dispose()
    assert (row.kind, row.name) == ("operator", "ci bot")
    assert secret not in row.secret_hash
    assert [a.action for a in actions] == ["operator.create"]
    assert actions[0].actor.startswith("local")
    assert (tmp_path / "data" / "secret-hash.key").stat().st_mode & 0o077 == 0

    broken = invoke(["admin", "create", "--db", "postgresql://nobody@127.0.0.1:1/x"], env=env)
    assert isinstance(broken.exception, ParkctlError)
    assert broken.exception.message.startswith("cannot open the database")


def test_operator_lifecycle_through_the_cli(tmp_path: Path) -> None:
    # An operator's whole life from the command line:
    # `parkctl admin list|disable|enable|rotate-secret|delete`.
    data = tmp_path / "data"
    env = {**os.environ, "PARK_CACHE_DIR": str(tmp_path)}
    env.pop("PARK_SERVER", None)
    with ServiceProcess(data, env=env) as server, server.client() as http:
        alice = parkctl_json("admin", "create", "--data-dir", str(data), "--name", "alice", env=env)
        bob = parkctl_json("admin", "create", "--data-dir", str(data), "--name", "bob", env=env)
        as_alice = {
            **env,
            "PARK_SERVER": server.url,
            "PARK_CLIENT_ID": alice["client_id"],
            "PARK_CLIENT_SECRET": alice["client_secret"],
        }

        def run(*args: str, ok: bool = True) -> Invocation:
            result = invoke(list(args), env=as_alice)
            assert (result.exit_code == 0) == ok, (result.output, result.exception)
            return result

        listed = json.loads(run("admin", "list", "--json").stdout)
        assert [o["name"] for o in listed] == ["alice", "bob"]
        table = run("admin", "list").stdout
        assert bob["client_id"] in table and bob["client_secret"] not in table

        def bob_token() -> int:
            data = {"grant_type": "client_credentials", "audience": "parkfleet-admin"}
            auth = (bob["client_id"], bob["client_secret"])
            return http.post("/oauth/token", data=data, auth=auth).status_code

        assert bob_token() == 200
        assert (
            json.loads(run("admin", "disable", bob["client_id"], "--json").stdout)["enabled"]
            is False
        )
        assert bob_token() == 401
        assert "enabled" in run("admin", "enable", bob["client_id"]).stdout
        assert bob_token() == 200
        rotated = json.loads(
            run("admin", "rotate-secret", bob["client_id"], "--grace", "0", "--json").stdout
        )
        assert rotated["previous_secret_expires_at"] is None
        assert bob_token() == 401
        run("admin", "delete", bob["client_id"])
        # The last enabled operator stays: a clear message, exit code 1, no traceback.
        refused = parkctl("admin", "disable", alice["client_id"], env=as_alice, ok=False)
        assert refused.returncode == 1
        assert "last enabled operator" in refused.stderr
        assert "Traceback" not in refused.stdout + refused.stderr
