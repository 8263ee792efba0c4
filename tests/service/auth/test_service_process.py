"""The authorization server as a real process: secrets stay out of files and logs, and a
resource server in another process checks tokens knowing only the JWKS URL and the issuer."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import Depends
from fastapi.testclient import TestClient
from sqlalchemy import select

from provisioning.common.scopes import COUNTS_WRITE, INGEST_AUDIENCE
from provisioning.service.app import create_app
from provisioning.service.auth.deps import require_token
from provisioning.service.auth.errors import InvalidToken
from provisioning.service.auth.keys import JWKS_MAX_AGE_S
from provisioning.service.auth.principal import Principal
from provisioning.service.auth.verify import RemoteJwks
from provisioning.service.config import Settings
from provisioning.service.metrics import Metrics
from provisioning.store.db import make_engine
from provisioning.store.models import AuditEvent
from tools.harness.clients import register_devices
from tools.harness.server import ServiceProcess


def test_no_token_leaves_the_server_unaudited_even_on_a_crash(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (device,) = register_devices(data_dir, 1)
    service = ServiceProcess(data_dir).start()
    try:
        with service.client() as http:
            grant = {"grant_type": "client_credentials"}
            jti = [
                jwt.decode(
                    http.post("/oauth/token", data=grant, auth=device).json()["access_token"],
                    options={"verify_signature": False},
                )["jti"]
                for _ in range(3)
            ]
    finally:
        service.stop(signal.SIGKILL)  # the instant the last answer arrived: no shutdown flush
    engine = make_engine(f"sqlite:///{data_dir / 'parkfleet.db'}")
    with engine.connect() as conn:
        query = select(AuditEvent.detail).where(AuditEvent.action == "token.issue")
        assert sorted(d["jti"] for d in conn.execute(query).scalars()) == sorted(jti)
    engine.dispose()


def test_secrets_stay_out_of_the_database_and_the_logs(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (device, other) = register_devices(data_dir, 2)
    service = ServiceProcess(data_dir, extra_args=["--log-level", "debug"])
    with service, service.client() as http:
        grant = {"grant_type": "client_credentials"}
        token = http.post("/oauth/token", data=grant, auth=device).json()["access_token"]
        wrong = (device[0], other[1])
        assert http.post("/oauth/token", data=grant, auth=wrong).status_code == 401
        body = {**grant, "client_id": other[0], "client_secret": other[1] + "x"}
        assert http.post("/oauth/token", json=body).status_code == 401
        http.post("/oauth/token", content=b"\xff" + other[1].encode(), auth=other)
        http.post("/oauth/introspect", data={"token": token}, auth=device)
    engine = make_engine(f"sqlite:///{data_dir / 'parkfleet.db'}")
    with engine.connect() as conn:
        query = select(AuditEvent.actor).where(AuditEvent.action == "token.issue")
        assert conn.execute(query).scalars().all() == [device[0]]
    engine.dispose()
    log = service.log()
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    assert any(p.name.startswith("parkfleet.db") for p in files)
    for _client_id, secret in (device, other):
        assert secret not in log
        for path in files:
            assert secret.encode() not in path.read_bytes(), path
    for path in files:
        assert token.encode() not in path.read_bytes(), path  # the audit log holds the jti only


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, Settings]]:
    """One real authorization server, and the settings of a resource server beside it that
    shares its database but knows only its JWKS URL and issuer."""
    root = tmp_path_factory.mktemp("remote")
    data_dir = root / "data"
    register_devices(data_dir)
    with ServiceProcess(data_dir) as service:
        yield (
            service,
            Settings(
                data_dir=root / "rs",
                db=f"sqlite:///{data_dir / 'parkfleet.db'}",
                issuer=service.url,
                jwks_url=service.url + "/.well-known/jwks.json",
            ),
        )


def _device_token(service: ServiceProcess) -> tuple[str, str]:
    (device,) = register_devices(service.data_dir)
    with service.client() as http:
        grant = {"grant_type": "client_credentials"}
        response = http.post("/oauth/token", data=grant, auth=device)
        return device[0], response.json()["access_token"]


def test_resource_server_in_another_process_uses_the_remote_jwks(
    issuer: tuple[ServiceProcess, Settings],
) -> None:
    service, settings = issuer
    client_id, token = _device_token(service)
    app = create_app(settings)
    assert isinstance(app.state.ctx.verifier.keys, RemoteJwks)

    @app.get("/probe")
    async def probe(
        who: Annotated[Principal, Depends(require_token(INGEST_AUDIENCE, COUNTS_WRITE))],
    ) -> dict[str, Any]:
        return {"client_id": who.client_id}

    with TestClient(app) as rs:
        response = rs.get("/probe", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text
        assert response.json() == {"client_id": client_id}
        # Only a resource server: no token endpoint, no keys of its own.
        assert rs.post("/oauth/token").status_code in (404, 405)
    assert not (settings.data_dir / "keys").exists()


def _remote_jwks(
    issuer: tuple[ServiceProcess, Settings],
    min_interval_s: float,
    max_age_s: float = JWKS_MAX_AGE_S,
) -> tuple[RemoteJwks, Metrics, list[str]]:
    """A resource server's view of the issuer's JWKS, its metrics, and the kids published."""
    service, settings = issuer
    assert settings.jwks_url is not None
    metrics = Metrics()
    jwks = RemoteJwks(
        settings.jwks_url, metrics, min_interval_s=min_interval_s, max_age_s=max_age_s
    )
    known = [k["kid"] for k in service.client().get("/.well-known/jwks.json").json()["keys"]]
    return jwks, metrics, known


def test_remote_jwks_refetches_on_unknown_kid_at_most_every_interval(
    issuer: tuple[ServiceProcess, Settings],
) -> None:
    jwks, metrics, known = _remote_jwks(issuer, min_interval_s=10)

    async def scenario() -> list[Any]:
        return [await jwks.refetch(kid) for kid in (known[0], "forged-1", "forged-2")]

    first, forged_1, forged_2 = asyncio.run(scenario())
    assert first is not None
    assert forged_1 is None and forged_2 is None
    # One fetch for the real kid; the forged kids within 10 s cost nothing more.
    assert metrics.jwks_fetches._value.get() == 1


def test_remote_verifier_refuses_a_token_signed_elsewhere(
    issuer: tuple[ServiceProcess, Settings],
) -> None:
    service, settings = issuer
    client_id, _token = _device_token(service)
    verifier = create_app(settings).state.ctx.verifier
    now = int(time.time())
    claims = {
        "iss": service.url,
        "sub": client_id,
        "client_id": client_id,
        "aud": INGEST_AUDIENCE,
        "iat": now,
        "exp": now + 60,
        "jti": "x" * 16,
        "scope": COUNTS_WRITE,
    }
    rogue = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(claims, rogue, "ES256", headers={"typ": "at+jwt", "kid": "rogue"})
    with pytest.raises(InvalidToken, match="unknown signing key"):
        asyncio.run(verifier.verify(token, INGEST_AUDIENCE))


def test_remote_jwks_is_refetched_after_its_max_age(
    issuer: tuple[ServiceProcess, Settings],
) -> None:
    jwks, metrics, (kid, *_) = _remote_jwks(issuer, min_interval_s=0, max_age_s=0.2)

    async def scenario() -> None:
        assert await jwks.refetch(kid) is not None
        assert jwks.get(kid) is not None  # fresh: served from the cache
        await asyncio.sleep(0.3)
        assert jwks.get(kid) is None  # stale: the verifier goes through refetch
        assert await jwks.refetch(kid) is not None

    asyncio.run(scenario())
    assert metrics.jwks_fetches._value.get() == 2
