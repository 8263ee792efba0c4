"""`parkctl` against the real service when the URL or the operator is not the right one: each
error names the cause and what to do (not `WRONG_VERSION_NUMBER`, `not_found: Not Found` or
`invalid_target: audience unknown...`); `admin create` touches no store it was not asked to
make, and says which one it used; `lot show` gives the occupancy."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tools.harness.parkctl import parkctl
from tools.harness.server import ServiceProcess


def _env(tmp_path: Path, server: str, creds: dict[str, str]) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("PARK_")},
        "PARK_SERVER": server,
        "PARK_CLIENT_ID": creds["client_id"],
        "PARK_CLIENT_SECRET": creds["client_secret"],
        "PARK_CACHE_DIR": str(tmp_path / "cache"),
        "COLUMNS": "200",
    }


def _error(done: object) -> str:
    text = str(getattr(done, "stderr", ""))
    assert getattr(done, "returncode", 0) == 1, text
    assert "Traceback" not in text
    return text


def test_wrong_urls_and_a_viewer_get_errors_that_say_what_to_do(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ServiceProcess(data) as server:
        assert server.url.startswith("http://")
        made = parkctl("admin", "create", "--data-dir", str(data), "--json")
        assert made.returncode == 0, made.stderr
        admin = json.loads(made.stdout)
        # It says which store it used (on stderr: stdout stays one JSON document).
        assert f"using database sqlite:///{data / 'parkfleet.db'}" in made.stderr
        viewer = json.loads(
            parkctl("admin", "create", "--data-dir", str(data), "--role", "viewer", "--json").stdout
        )
        host = server.url.removeprefix("http://")

        tls = _error(parkctl("device", "list", env=_env(tmp_path, f"https://{host}", admin)))
        assert "answers plain HTTP, not TLS" in tls and f"Use http://{host}" in tls
        assert "WRONG_VERSION_NUMBER" not in tls

        for page in (f"{server.url}/ui/", f"{server.url}/ui", f"{server.url}/ui/boards"):
            ui = _error(parkctl("device", "list", env=_env(tmp_path, page, admin)))
            assert f"not its base URL: use {server.url}" in ui and "Not Found" not in ui

        seen = _error(parkctl("device", "list", env=_env(tmp_path, server.url, viewer)))
        assert f"operator {viewer['client_id']} is a viewer" in seen
        assert "admin create --role admin" in seen and "invalid_target" not in seen

        # The same URL without the mistakes works, and `lot show` gives the occupancy.
        env = _env(tmp_path, server.url, admin)
        assert parkctl("lot", "create", "east", "--capacity", "10", env=env).returncode == 0
        shown = parkctl("lot", "show", "east", env=env)
        assert shown.returncode == 0, shown.stderr
        assert "cars" in shown.stdout and "occupancy" in shown.stdout and "0%" in shown.stdout
        as_json = json.loads(parkctl("lot", "show", "east", "--json", env=env).stdout)
        assert as_json["occupancy"] == {"cars": 0, "boards": 0, "free": 10}
        # The audit names the operator beside its ID.
        audit = parkctl("admin", "audit", env=env)
        assert f"admin ({admin['client_id']})" in audit.stdout, audit.stdout


def test_admin_create_makes_a_new_store_only_with_init(tmp_path: Path) -> None:
    wrong = tmp_path / "typo"
    refused = parkctl("admin", "create", "--data-dir", str(wrong), "--json")
    text = _error(refused)
    assert "no parkfleet service's store at" in text and str(wrong) in text
    assert "add --init" in text and refused.stdout == ""
    assert not wrong.exists()  # nothing created
    made = parkctl("admin", "create", "--data-dir", str(wrong), "--init", "--json")
    assert made.returncode == 0, made.stderr
    assert f"new database sqlite:///{wrong / 'parkfleet.db'}" in made.stderr
    assert json.loads(made.stdout)["client_id"].startswith("op_")
    again = parkctl("admin", "create", "--data-dir", str(wrong), "--json")  # now it exists
    assert again.returncode == 0 and "using database" in again.stderr
