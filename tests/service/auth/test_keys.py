"""Signing keys: private parts sealed in the database under an owner-only key-encryption key,
public-only JWKS, rotation without downtime, older versions' key files migrated."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from provisioning.common.errors import ParkctlError
from provisioning.service.auth.kek import KEK_FILE, KeyWrap, load_kek
from provisioning.service.auth.keys import ACTIVE, NEXT, RETIRED, KeyStore
from provisioning.store.db import make_engine, migrate, session_factory
from provisioning.store.models import SigningKey
from tests.parkctl.clirunner import invoke
from tests.service.auth.conftest import Auth, jwt_parts
from tools.harness.clients import register_devices
from tools.harness.parkctl import parkctl
from tools.harness.server import ServiceProcess


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sealed(sessions: sessionmaker[Session]) -> dict[str, bytes | None]:
    with sessions() as session:
        return dict(session.execute(select(SigningKey.kid, SigningKey.private_key_enc)).all())


def test_private_keys_are_sealed_and_never_published(auth: Auth) -> None:
    data_dir = auth.ctx.settings.data_dir
    assert not list(data_dir.glob("keys/*.pem"))
    assert mode(data_dir / KEK_FILE) == 0o600
    assert mode(data_dir / "secret-hash.key") == 0o600
    ((kid, sealed),) = _sealed(auth.ctx.sessions).items()
    assert sealed is not None
    assert b"PRIVATE KEY" not in sealed
    pem = KeyWrap(load_kek(data_dir)).open(kid, sealed)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    with pytest.raises(ParkctlError, match="key-encryption key"):
        KeyWrap(bytes(32)).open(kid, sealed)
    with pytest.raises(ParkctlError, match="key-encryption key"):
        KeyWrap(load_kek(data_dir)).open("another-kid", sealed)  # bound to its row
    response = auth.http.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert "max-age=300" in response.headers["cache-control"]
    keys = response.json()["keys"]
    assert len(keys) == 1
    (jwk,) = keys
    assert set(jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}  # no "d"
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("EC", "P-256", "ES256", "sig")
    assert jwk["kid"] == kid
    assert pem.decode().split("\n")[1] not in response.text


def test_key_life_cycle(db_url: str, tmp_path: Path) -> None:
    migrate(db_url)
    engine = make_engine(db_url)
    try:
        store = KeyStore(session_factory(engine), tmp_path / "keys", 0.3, 0.6, load_kek(tmp_path))
        store.ensure_active()
        first = store.signer().kid
        assert [k["kid"] for k in store.jwks()["keys"]] == [first]

        second = store.rotate()
        with pytest.raises(ValueError, match="already waiting"):
            store.rotate()
        store.refresh(force=True)
        # Published before it signs: verifiers that fetch the JWKS now know it in time.
        assert {k["kid"] for k in store.jwks()["keys"]} == {first, second}
        assert store.signer().kid == first

        time.sleep(0.35)
        store.refresh(force=True)
        assert store.signer().kid == second
        statuses = {k.kid: k for k in store.list_keys()}
        assert statuses[second].status == ACTIVE
        assert statuses[first].status == RETIRED
        assert statuses[first].retire_after is not None
        sealed = _sealed(store._sessions)
        assert sealed[first] is None  # no longer needed to sign: destroyed
        assert sealed[second] is not None
        # Still published until the last token it signed has expired ...
        assert {k["kid"] for k in store.jwks()["keys"]} == {first, second}
        assert store.public_key(first) is not None

        time.sleep(0.65)
        store.refresh(force=True)
        # ... then dropped.
        assert [k["kid"] for k in store.jwks()["keys"]] == [second]
        assert store.public_key(first) is None
    finally:
        engine.dispose()


def test_keys_cli_rotate_and_list(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    store_url = f"sqlite:///{tmp_path / 'parkfleet.db'}"
    migrate(store_url)
    engine = make_engine(store_url)
    sessions = session_factory(engine)
    KeyStore(sessions, tmp_path / "keys", 600, 86400, load_kek(tmp_path)).ensure_active()
    result = invoke(["keys", "rotate", *data, "--json"])
    assert result.exit_code == 0, result.output
    kid = json.loads(result.output)["kid"]
    assert _sealed(sessions)[kid] is not None
    engine.dispose()
    again = invoke(["keys", "rotate", *data])
    assert again.exit_code != 0
    listed = json.loads(invoke(["keys", "list", *data, "--json"]).output)
    assert [(k["status"]) for k in listed] == [ACTIVE, NEXT]
    table = invoke(["keys", "list", *data])
    assert kid in table.output


def _token(http: httpx.Client, creds: tuple[str, str]) -> str:
    response = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=creds)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _parkctl(*args: str) -> Any:
    out = parkctl(*args, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_rotation_without_downtime_against_the_real_service(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (creds,) = register_devices(data_dir)
    # Introspection is for operators (RFC 7662 §4), so an operator's credentials ask.
    made = _parkctl("admin", "create", "--data-dir", str(data_dir), "--json")
    operator = (made["client_id"], made["client_secret"])
    delay = 3.0
    with (
        ServiceProcess(
            data_dir,
            extra_args=["--token-rate-burst", "1000"],
            env={"PARK_KEY_PUBLISH_DELAY_S": str(delay)},
        ) as service,
        service.client() as http,
    ):
        old_token = _token(http, creds)
        old_kid = jwt_parts(old_token)[0]["kid"]

        rotated_at = time.monotonic()
        new_kid = _parkctl("keys", "rotate", "--data-dir", str(data_dir), "--json")["kid"]
        time.sleep(1.2)  # the server looks at the database about once a second
        published = {k["kid"] for k in http.get("/.well-known/jwks.json").json()["keys"]}
        assert published == {old_kid, new_kid}
        kid_now = jwt_parts(_token(http, creds))[0]["kid"]
        if time.monotonic() - rotated_at < delay - 0.5:
            assert kid_now == old_kid  # published, not yet signing

        deadline = time.monotonic() + delay + 10
        while jwt_parts(new_token := _token(http, creds))[0]["kid"] != new_kid:
            assert time.monotonic() < deadline, "the next key never became active"
            time.sleep(0.3)
        # The old key's tokens keep working: it stays published, retired.
        published = {k["kid"] for k in http.get("/.well-known/jwks.json").json()["keys"]}
        assert published == {old_kid, new_kid}
        for token in (old_token, new_token):
            answer = http.post("/oauth/introspect", data={"token": token}, auth=operator).json()
            assert answer["active"] is True
        listed = {
            k["kid"]: k for k in _parkctl("keys", "list", "--data-dir", str(data_dir), "--json")
        }
        assert listed[old_kid]["status"] == RETIRED
        assert listed[old_kid]["retire_after"] > time.time() + 86000
        assert listed[new_kid]["status"] == ACTIVE


def test_key_files_of_older_versions_are_sealed_into_the_database(
    db_url: str, tmp_path: Path
) -> None:
    migrate(db_url)
    engine = make_engine(db_url)
    try:
        sessions = session_factory(engine)
        kek = load_kek(tmp_path)
        first = KeyStore(sessions, tmp_path / "keys", 600, 86400, kek)
        first.ensure_active()
        kid = first.signer().kid
        # What an older version left: the private key in a 0600 file, none in the row.
        pem = KeyWrap(kek).open(kid, _sealed(sessions)[kid] or b"")
        with sessions.begin() as session:
            session.execute(update(SigningKey).values(private_key_enc=None))
        (tmp_path / "keys").mkdir()
        (tmp_path / "keys" / f"{kid}.pem").write_bytes(pem)

        store = KeyStore(sessions, tmp_path / "keys", 600, 86400, kek)
        store.ensure_active()
        assert store.signer().kid == kid  # the same key goes on signing
        assert store.signer().private_key.private_numbers() == (
            first.signer().private_key.private_numbers()
        )
        assert KeyWrap(kek).open(kid, _sealed(sessions)[kid] or b"") == pem
        assert not list((tmp_path / "keys").glob("*.pem"))
    finally:
        engine.dispose()
