"""`python -m tools.demo --idp oidc`: the demo's boards registered in node-oidc-provider."""

from __future__ import annotations

import json
import os
from pathlib import Path

from provisioning.parkctl.idp.sealed import RegistrationStore
from tools.harness.oidcprovider import node_binary
from tools.harness.parkctl import python_module


def test_demo_boards_are_clients_of_node_oidc_provider(tmp_path: Path) -> None:
    node_binary()  # ServiceMissing (a skip, a failure under CI) without node-oidc-provider
    done = python_module(
        "tools.demo", "--idp", "oidc", "--duration", "12", "--dir", str(tmp_path / "demo"),
        env={**os.environ, "COLUMNS": "160"}, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "boards are registered in node-oidc-provider at http://127.0.0.1:" in done.stdout
    assert "1/1 boards ready" in done.stdout and "2/2 boards ready" in done.stdout
    assert "Lot north recounted: 12 car(s)" in done.stdout
    assert "no update: boards of an external issuer hold only counts:write" in done.stdout
    assert "demo stopped" in done.stdout
    # The registration access tokens stay sealed in parkctl's owner-only file, never on screen.
    registrations = tmp_path / "demo" / "idp-registrations.json"
    assert registrations.stat().st_mode & 0o777 == 0o600
    assert registrations.with_name("idp-registrations.key").stat().st_mode & 0o777 == 0o600
    stored = registrations.read_text()
    keys = list(json.loads(stored))
    assert len(keys) == 3
    for key in keys:
        issuer, client_id = key.rsplit(" ", 1)
        entry = RegistrationStore(registrations).get(issuer, client_id)
        assert entry is not None
        token = entry["registration_access_token"]  # sealed in the file, shown nowhere
        assert token not in stored and token not in done.stdout + done.stderr
