"""`AdminClient` against the real service process: token cache, retries, errors, TLS."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.api.client import (
    AdminClient,
    DeviceNotFoundError,
    MacConflictError,
)
from provisioning.parkctl.api.tokens import TokenCache
from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.registry import service
from provisioning.store.db import make_engine, session_factory
from tools.harness.pki import make_pki
from tools.harness.server import ServiceProcess


def make_operator(data_dir: Path) -> tuple[str, str]:
    """An operator written straight into the service's database (what `admin create` does)."""
    engine = make_engine(f"sqlite:///{data_dir / 'parkfleet.db'}")
    try:
        with session_factory(engine)() as session:
            client, secret = service.create_operator(
                session, SecretHasher.from_data_dir(data_dir), "test", "client tests"
            )
    finally:
        engine.dispose()
    return client.client_id, secret


def admin_tokens_issued(server: ServiceProcess) -> float:
    """Tokens for parkfleet-admin the service has issued so far (its /metrics counter, which
    moves before the response is sent; the audit log is written in batches, later)."""
    with server.client() as http:
        text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith('parkfleet_tokens_issued_total{audience="parkfleet-admin"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    data_dir = tmp_path_factory.mktemp("registry-client") / "data"
    with ServiceProcess(data_dir, env={"PARK_METRICS_PUBLIC": "1"}) as proc:
        yield proc


@pytest.fixture
def operator(server: ServiceProcess) -> tuple[str, str]:
    return make_operator(server.data_dir)


def test_one_token_serves_many_calls_and_many_clients(
    server: ServiceProcess, operator: tuple[str, str], tmp_path: Path
) -> None:
    client_id, secret = operator
    cache = TokenCache(tmp_path / "cache")
    issued = admin_tokens_issued(server)
    with AdminClient(server.url, client_id, secret, cache=cache) as api:
        created = api.register_device("lot-a", "one", "02:00:00:00:01:01")
        for _ in range(12):  # more calls than the token bucket's burst of 10
            api.get_device(created.client_id)
    # A second process (a later `parkctl` call) reuses the token from the disk cache.
    with AdminClient(server.url + "/", client_id, secret, cache=cache) as api:
        assert api.find_by_mac("02-00-00-00-01-01") is not None
    assert admin_tokens_issued(server) == issued + 1
    info = cache.path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(cache.path.parent.stat().st_mode) == 0o700
    assert secret not in cache.path.read_text()


def _cache_holding(
    server: ServiceProcess, client_id: str, tmp_path: Path, token: str, use_by: float
) -> tuple[TokenCache, str]:
    """A token cache holding `token` as the operator's admin token; the cache and its key."""
    cache = TokenCache(tmp_path / "cache")
    key = f"{server.url} {client_id} parkfleet-admin"
    cache.put(key, token, use_by)
    return cache, key


def test_a_refused_cached_token_is_dropped_and_the_call_retried_once(
    server: ServiceProcess, operator: tuple[str, str], tmp_path: Path
) -> None:
    client_id, secret = operator
    cache, key = _cache_holding(server, client_id, tmp_path, "not-a-token", time.time() + 3600)
    issued = admin_tokens_issued(server)
    with AdminClient(server.url, client_id, secret, cache=cache) as api:
        assert api.list_devices(limit=1).items is not None
    token = json.loads(cache.path.read_text())["tokens"][key]["access_token"]
    assert token != "not-a-token"
    assert admin_tokens_issued(server) == issued + 1


def test_an_expiring_cached_token_is_replaced(
    server: ServiceProcess, operator: tuple[str, str], tmp_path: Path
) -> None:
    client_id, secret = operator
    # Past its use-by time (60 s before `exp`).
    cache, key = _cache_holding(server, client_id, tmp_path, "stale", time.time() - 1)
    assert cache.get(key) is None
    with AdminClient(server.url, client_id, secret, cache=cache) as api:
        api.list_devices(limit=1)
    found = cache.get(key)
    assert found is not None and found[0] != "stale"
    # Default token lifetime 86400 s: reused until 60 s before it expires.
    assert 86400 - 61 < found[1] - time.time() <= 86400 - 60


def test_a_cache_file_others_can_write_is_ignored(tmp_path: Path) -> None:
    cache = TokenCache(tmp_path)
    cache.put("k", "token", time.time() + 100)
    assert cache.get("k") is not None
    os.chmod(cache.path, 0o666)
    assert cache.get("k") is None


def test_errors_are_clear_and_never_carry_the_secret(
    server: ServiceProcess, operator: tuple[str, str], tmp_path: Path
) -> None:
    client_id, secret = operator
    cache = TokenCache(tmp_path / "cache")
    wrong = secret[::-1]
    with (
        AdminClient(server.url, client_id, wrong, cache=cache) as api,
        pytest.raises(ParkctlError) as caught,
    ):
        api.list_devices()
    assert "PARK_CLIENT_SECRET" in caught.value.message
    assert wrong not in str(caught.value) and secret not in str(caught.value)

    with AdminClient(server.url, client_id, secret, cache=cache) as api:
        first = api.register_device("lot-b", "one", "02:00:00:00:02:01")
        with pytest.raises(MacConflictError) as conflict:
            api.register_device("lot-b", "two", "02:00:00:00:02:01")
        assert conflict.value.client_id == first.client_id
        with pytest.raises(DeviceNotFoundError, match="dev_missing"):
            api.get_device("dev_missing")
        with pytest.raises(ParkctlError, match="lot: lot may contain only"):
            api.register_device("lot b", "x")
        assert api.get_device(first.client_id).mac == "02:00:00:00:02:01"
        # The secret is masked everywhere except the JSON it came in.
        assert first.client_secret.get_secret_value() not in repr(first)
        assert first.client_secret.get_secret_value() in first.model_dump_json()

    with (
        AdminClient("http://127.0.0.1:9", client_id, secret, cache=cache) as api,
        pytest.raises(ParkctlError, match=r"cannot reach http://127\.0\.0\.1:9"),
    ):
        api.list_devices()


def test_pages_are_followed_and_rotation_reported(
    server: ServiceProcess, operator: tuple[str, str], tmp_path: Path
) -> None:
    client_id, secret = operator
    with AdminClient(server.url, client_id, secret, cache=TokenCache(tmp_path)) as api:
        made = [api.register_device("lot-pages", f"d{i}").client_id for i in range(5)]
        got = [d.client_id for d in api.iter_devices(lot="lot-pages", page_size=2)]
        assert got == made
        rotated = api.rotate_secret(made[0])
        assert rotated.previous_secret_expires_at is not None
        assert rotated.previous_secret_expires_at > time.time() + 86000  # default 24 h
        assert api.rotate_secret(made[0], grace_s=0).previous_secret_expires_at is None
        assert api.disable(made[1]).enabled is False
        assert api.enable(made[1]).enabled is True
        assert api.update_device(made[2], name="renamed").name == "renamed"
        api.delete_device(made[3])
        with pytest.raises(DeviceNotFoundError):
            api.get_device(made[3])
        events = api.audit(limit=5, target=made[0]).items
        assert [e.action for e in events] == [
            "device.rotate_secret",
            "device.rotate_secret",
            "device.create",
        ]


def test_https_with_a_private_ca(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    data = tmp_path / "data"
    with ServiceProcess(data, tls=(pki.server_cert, pki.server_key)) as tls_server:
        client_id, secret = make_operator(data)
        cache = TokenCache(tmp_path / "cache")
        with (
            AdminClient(tls_server.url, client_id, secret, cache=cache) as api,
            pytest.raises(ParkctlError, match=r"cannot reach https://localhost.*--ca-cert"),
        ):
            api.list_devices()  # the private CA is not in the system store
        with AdminClient(tls_server.url, client_id, secret, verify=pki.ca_pem, cache=cache) as api:
            assert api.list_devices().items == []
        with pytest.raises(ParkctlError, match="cannot use CA certificate"):
            AdminClient(tls_server.url, client_id, secret, verify=tmp_path / "nope.pem")
