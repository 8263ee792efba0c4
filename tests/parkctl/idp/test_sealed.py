"""Registration access tokens are sealed on the operator's host: the file alone opens nothing,
an entry moved to another client does not open, and a file others can read is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.idp.sealed import RegistrationStore

ISSUER = "https://login.example.com"


def test_sealed_round_trip_and_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARK_IDP_KEK", raising=False)
    path = tmp_path / "cfg" / "idp-registrations.json"
    store = RegistrationStore(path)
    store.put(ISSUER, "board-1", "rat-secret-1", "https://login.example.com/reg/board-1")
    store.put(ISSUER, "board-2", "rat-secret-2", "https://login.example.com/reg/board-2")
    assert "rat-secret" not in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600 == store.key_path.stat().st_mode & 0o777
    entry = store.get(ISSUER, "board-1")
    assert entry == {
        "registration_access_token": "rat-secret-1",
        "registration_client_uri": "https://login.example.com/reg/board-1",
    }

    # An entry copied to another client's key does not unseal (the IDs are the associated data).
    data = json.loads(path.read_text())
    data[f"{ISSUER} board-2"] = data[f"{ISSUER} board-1"]
    path.write_text(json.dumps(data))
    with pytest.raises(ParkctlError, match="cannot be unsealed"):
        store.get(ISSUER, "board-2")

    # Another key-encryption key opens nothing.
    monkeypatch.setenv("PARK_IDP_KEK", "A" * 43)
    with pytest.raises(ParkctlError, match="cannot be unsealed"):
        store.get(ISSUER, "board-1")
    monkeypatch.delenv("PARK_IDP_KEK")

    store.put(ISSUER, "board-1", None)
    assert store.get(ISSUER, "board-1") is None

    path.chmod(0o644)
    with pytest.raises(ParkctlError, match="must be owned by you and private"):
        store.get(ISSUER, "board-1")
