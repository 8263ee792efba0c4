"""Several real service processes on one PostgreSQL database behave as one service:
revocation everywhere within a second, one key set, shared token buckets, `--workers`."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from provisioning.common.scopes import ADMIN_AUDIENCE
from provisioning.service.auth.kek import new_kek_text
from tests.service.auth.conftest import jwt_parts
from tools.harness.clients import register_devices
from tools.harness.parkctl import parkctl
from tools.harness.server import ServiceProcess

BOUND_S = 1.0  # docs/service.md: revocation reaches every instance within a second


class Cluster:
    """Three instances, each with its own data directory, sharing the database, the
    secret-hash key (the same file copied), the key-encryption key (PARK_KEK) and the issuer."""

    def __init__(self, root: Path, db: str, stack: ExitStack, extra: list[str]) -> None:
        self.db = db
        first = root / "a"
        self.devices = register_devices(first, count=3, db=db)
        made = parkctl("admin", "create", "--db", db, "--data-dir", str(first), "--json")
        assert made.returncode == 0, made.stderr
        operator = json.loads(made.stdout)
        self.operator = (operator["client_id"], operator["client_secret"])
        # One issuer for all (the load balancer's URL), as a deployment must configure it.
        env = {"PARK_KEK": new_kek_text(), "PARK_ISSUER": "https://parkfleet.test"}
        self.services = []
        for name in "abc":
            data_dir = root / name
            if name != "a":
                data_dir.mkdir()
                shutil.copy(first / "secret-hash.key", data_dir / "secret-hash.key")
            service = stack.enter_context(
                ServiceProcess(data_dir, db=db, env=env, extra_args=extra)
            )
            self.services.append(service)
        self.http = [stack.enter_context(s.client()) for s in self.services]

    def token(self, http: httpx.Client, creds: tuple[str, str]) -> httpx.Response:
        return http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=creds)

    def active(self, http: httpx.Client, token: str) -> bool:
        answer = http.post("/oauth/introspect", data={"token": token}, auth=self.operator)
        assert answer.status_code == 200, answer.text
        return bool(answer.json()["active"])

    def admin(self, http: httpx.Client) -> dict[str, str]:
        form = {"grant_type": "client_credentials", "audience": ADMIN_AUDIENCE}
        response = http.post("/oauth/token", data=form, auth=self.operator)
        assert response.status_code == 200, response.text
        return {"Authorization": "Bearer " + response.json()["access_token"]}


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    with ExitStack() as stack:
        yield Cluster(tmp_path, pg_url, stack, ["--token-rate-burst", "10"])


def _everywhere_within(cluster: Cluster, check: Callable[[httpx.Client], bool]) -> float:
    """Seconds until `check` holds on every instance (polled; fails past 5 s)."""
    start = time.monotonic()
    pending = list(cluster.http)
    while pending:
        pending = [http for http in pending if not check(http)]
        assert time.monotonic() - start < 5, "not seen by every instance in 5 s"
    return time.monotonic() - start


def test_revocation_reaches_every_instance_within_a_second(cluster: Cluster) -> None:
    (d1, s1), (d2, s2), (d3, _) = cluster.devices
    a, b, c = cluster.http
    tokens = {}
    for client_id, secret in cluster.devices:
        response = cluster.token(a, (client_id, secret))
        assert response.status_code == 200, response.text
        tokens[client_id] = response.json()["access_token"]
        for http in cluster.http:  # every instance has checked it once: status cached
            assert cluster.active(http, tokens[client_id])
    headers = cluster.admin(b)

    assert b.post(f"/admin/devices/{d1}/disable", headers=headers).status_code == 200
    took = _everywhere_within(cluster, lambda http: not cluster.active(http, tokens[d1]))
    assert took < BOUND_S, took
    assert cluster.token(c, (d1, s1)).status_code == 401

    rotated = b.post(f"/admin/devices/{d2}/rotate-secret", json={"grace_s": 0}, headers=headers)
    assert rotated.status_code == 200, rotated.text
    took = _everywhere_within(cluster, lambda http: not cluster.active(http, tokens[d2]))
    assert took < BOUND_S, took
    for http in cluster.http:  # the old secret is refused everywhere, the new one served
        assert cluster.token(http, (d2, s2)).status_code == 401
    new_secret = rotated.json()["client_secret"]
    assert cluster.token(c, (d2, new_secret)).status_code == 200

    assert c.delete(f"/admin/devices/{d3}", headers=cluster.admin(c)).status_code == 204
    took = _everywhere_within(cluster, lambda http: not cluster.active(http, tokens[d3]))
    assert took < BOUND_S, took


def test_one_key_set_and_rotation_seen_by_all(cluster: Cluster) -> None:
    jwks = [http.get("/.well-known/jwks.json").json() for http in cluster.http]
    assert jwks[0] == jwks[1] == jwks[2] and len(jwks[0]["keys"]) == 1
    kid = jwks[0]["keys"][0]["kid"]
    device = cluster.devices[0]
    for http in cluster.http:  # every instance signs with the same active key
        response = cluster.token(http, device)
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        assert jwt_parts(token)[0]["kid"] == kid
        assert all(cluster.active(other, token) for other in cluster.http)

    data_dir = str(cluster.services[0].data_dir)
    out = parkctl("keys", "rotate", "--db", cluster.db, "--data-dir", data_dir, "--json")
    assert out.returncode == 0, out.stderr
    new_kid = json.loads(out.stdout)["kid"]

    def published(http: httpx.Client) -> bool:
        keys = http.get("/.well-known/jwks.json").json()["keys"]
        return {k["kid"] for k in keys} == {kid, new_kid}

    assert _everywhere_within(cluster, published) < BOUND_S


def test_token_bucket_is_shared_across_instances(cluster: Cluster) -> None:
    device = cluster.devices[0]
    answers = [cluster.token(cluster.http[n % 3], device) for n in range(20)]
    codes = [r.status_code for r in answers]
    assert codes == [200] * 10 + [429] * 10, codes
    for refused in answers[10:]:
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"] == "too_many_requests"


def test_workers_share_one_port(tmp_path: Path, pg_url: str) -> None:
    (device,) = register_devices(tmp_path, db=pg_url)
    extra = ["--workers", "2", "--token-rate-burst", "10"]
    with ServiceProcess(tmp_path, db=pg_url, extra_args=extra) as service:
        form = {"grant_type": "client_credentials"}
        with service.client() as http:
            # A new connection each time, so the kernel spreads them over both workers.
            codes = [
                http.post(
                    "/oauth/token", data=form, auth=device, headers={"Connection": "close"}
                ).status_code
                for _ in range(14)
            ]
        assert codes == [200] * 10 + [429] * 4, codes
    log = service.log()
    assert log.count("Started server process") == 2, log
