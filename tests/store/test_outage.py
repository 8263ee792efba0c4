"""PostgreSQL stopped and started under a running service: while it is down every
request that needs it is answered 503 `temporarily_unavailable` with `Retry-After` (never a 500
or a traceback), and once it is back the very next requests succeed, on pooled connections that
the restart broke."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from provisioning.common.scopes import ADMIN_AUDIENCE
from tools.harness.clients import register_devices
from tools.harness.parkctl import parkctl
from tools.harness.pgcluster import PostgresCluster
from tools.harness.server import ServiceProcess

PARALLEL = 12  # enough requests at once that the pool holds several connections
TOKEN = {"grant_type": "client_credentials"}


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[PostgresCluster]:
    with PostgresCluster(tmp_path / "pg") as cluster:
        yield cluster


class Fleet:
    """One service on the private cluster, boards with tokens, and an operator."""

    def __init__(self, root: Path, pg: PostgresCluster, service: ServiceProcess) -> None:
        self.boards = register_devices(root / "data", count=PARALLEL, db=pg.url)
        made = parkctl(
            "admin", "create", "--db", pg.url, "--data-dir", str(root / "data"), "--json"
        )
        assert made.returncode == 0, made.stderr
        operator = json.loads(made.stdout)
        self.operator = (operator["client_id"], operator["client_secret"])
        self.service = service
        self.seqs = itertools.count(1)
        self.bearers: list[str] = []

    def token(self, http: httpx.Client, creds: tuple[str, str], **form: str) -> httpx.Response:
        return http.post("/oauth/token", data={**TOKEN, **form}, auth=creds)

    def post(self, http: httpx.Client, n: int) -> httpx.Response:
        body = {"readings": [{"seq": next(self.seqs), "cars": n, "ts": int(time.time())}]}
        headers = {"Authorization": "Bearer " + self.bearers[n]}
        return http.post("/v1/counts", json=body, headers=headers)

    def requests(self) -> list[Callable[[httpx.Client, int], httpx.Response]]:
        """One of each kind of request that needs the database: a board's post, a token, an
        authenticated read, the admin API, readiness."""
        admin = self.token_for_admin()

        def token(http: httpx.Client, n: int) -> httpx.Response:
            return self.token(http, self.boards[n])

        def admin_list(http: httpx.Client, n: int) -> httpx.Response:
            return http.get("/admin/devices", headers={"Authorization": "Bearer " + admin})

        def ready(http: httpx.Client, n: int) -> httpx.Response:
            return http.get("/readyz")

        return [self.post, token, admin_list, ready]

    def token_for_admin(self) -> str:
        with self.service.client() as http:
            answer = self.token(http, self.operator, audience=ADMIN_AUDIENCE)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


def _all_at_once(
    clients: list[httpx.Client], request: Callable[[httpx.Client, int], httpx.Response]
) -> list[httpx.Response]:
    with ThreadPoolExecutor(len(clients)) as pool:
        return list(pool.map(request, clients, range(len(clients))))


def test_postgres_restart_gives_503_while_down_and_success_at_once_after(
    tmp_path: Path, pg: PostgresCluster
) -> None:
    data = tmp_path / "data"
    register_devices(data, count=0, db=pg.url)  # migrate before the service starts
    with ServiceProcess(data, db=pg.url, extra_args=["--token-rate-burst", "50"]) as service:
        fleet = Fleet(tmp_path, pg, service)
        clients = [service.client() for _ in range(PARALLEL)]
        try:
            for n, creds in enumerate(fleet.boards):
                answer = fleet.token(clients[n], creds)
                assert answer.status_code == 200, answer.text
                fleet.bearers.append(answer.json()["access_token"])
            kinds = fleet.requests()
            for request in kinds:  # the pool now holds connections the restart will break
                assert [r.status_code for r in _all_at_once(clients, request)] == [200] * PARALLEL

            pg.stop()
            for request in kinds:
                for answer in _all_at_once(clients, request):
                    assert answer.status_code == 503, answer.text
                    assert answer.headers["retry-after"].isdigit()
                    if request is not kinds[-1]:
                        assert answer.json()["error"] == "temporarily_unavailable"

            pg.start()
            # At once: no retry, no wait for a pool to notice.
            for request in kinds:
                statuses = [r.status_code for r in _all_at_once(clients, request)]
                assert statuses == [200] * PARALLEL, statuses
        finally:
            for http in clients:
                http.close()
        log = service.log()
    assert "Traceback" not in log, log[-4000:]
    assert " 500 " not in log
