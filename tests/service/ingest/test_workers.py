"""Several service processes on one PostgreSQL database: `parkctl serve --workers 2`, and two
instances whose group commits (ingest/commit.py) write at once. Posts spread over them are each
stored exactly once, a repeated post is a duplicate whichever process takes it, and the lots'
totals and their newest retained outbox messages agree with the boards' readings."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
from sqlalchemy import text

from provisioning.service.auth.kek import new_kek_text
from provisioning.store.db import make_engine
from tools.harness.clients import register_devices
from tools.harness.net import free_port
from tools.harness.server import ServiceProcess

CLOSE = {"Connection": "close"}  # a new connection per post: the kernel spreads them


def _token(http: httpx.Client, creds: tuple[str, str]) -> str:
    form = {"grant_type": "client_credentials"}
    response = http.post("/oauth/token", data=form, auth=creds, headers=CLOSE)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def test_two_workers_store_each_reading_once(tmp_path: Path, pg_url: str) -> None:
    devices = register_devices(tmp_path, count=4, db=pg_url)
    with (
        ServiceProcess(tmp_path, db=pg_url, extra_args=["--workers", "2"]) as service,
        service.client() as http,
    ):
        tokens = [_token(http, creds) for creds in devices]
        posted = 0
        for seq in range(10):
            for token in tokens:
                batch = {
                    "readings": [{"seq": seq * 5 + i, "cars": i, "ts": 1.8e9} for i in range(5)]
                }
                auth = {"Authorization": f"Bearer {token}", **CLOSE}
                response = http.post("/v1/counts", json=batch, headers=auth)
                assert response.status_code == 200, response.text
                assert response.json() == {"accepted": 5, "duplicates": 0}
                posted += 5
        again = http.post(
            "/v1/counts",
            json={"readings": [{"seq": 0, "cars": 0, "ts": 1.8e9}]},
            headers={"Authorization": f"Bearer {tokens[0]}", **CLOSE},
        )
        assert again.json() == {"accepted": 0, "duplicates": 1}
    assert service.log().count("Started server process") == 2
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM readings")).scalar_one()
    finally:
        engine.dispose()
    assert stored == posted == 200


LOTS = ("lot-a", "lot-b", "lot-c")
PER_LOT = 4
POSTS = 15
READINGS = 3  # per post


def _cars(device: int, seq: int) -> int:
    return (device * 7 + seq) % 13


async def _post_everything(urls: list[str], tokens: list[str]) -> list[tuple[int, int, int]]:
    """Every board posts each batch to both instances at once (a retry that crossed over);
    all boards at once. (status, accepted, duplicates) of each post."""
    answers: list[tuple[int, int, int]] = []
    clients = [httpx.AsyncClient(base_url=url, timeout=30) for url in urls]
    try:

        async def post(client: httpx.AsyncClient, token: str, body: dict[str, object]) -> None:
            response = await client.post(
                "/v1/counts", json=body, headers={"Authorization": f"Bearer {token}"}
            )
            if response.status_code != 200:
                answers.append((response.status_code, 0, 0))
                return
            answer = response.json()
            answers.append((200, answer["accepted"], answer["duplicates"]))

        async def board(n: int, token: str) -> None:
            for p in range(POSTS):
                seqs = range(p * READINGS, (p + 1) * READINGS)
                body = {"readings": [{"seq": s, "cars": _cars(n, s)} for s in seqs]}
                await asyncio.gather(*(post(client, token, body) for client in clients))

        await asyncio.gather(*(board(n, token) for n, token in enumerate(tokens)))
    finally:
        for client in clients:
            await client.aclose()
    return answers


def test_two_instances_group_commit_at_once_without_loss_or_double_count(
    tmp_path: Path, pg_url: str
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    devices = [d for lot in LOTS for d in register_devices(first, PER_LOT, lot, db=pg_url)]
    second.mkdir()
    shutil.copy(first / "secret-hash.key", second / "secret-hash.key")
    # Outbox rows are written only with a broker configured; none listens here, so they stay
    # in the table to be checked.
    env = {
        "PARK_KEK": new_kek_text(),
        "PARK_ISSUER": "https://parkfleet.test",
        "PARK_MQTT_URL": f"mqtt://svc:pw@127.0.0.1:{free_port()}",
    }
    with ExitStack() as stack:
        services = [
            stack.enter_context(ServiceProcess(data_dir, db=pg_url, env=env))
            for data_dir in (first, second)
        ]
        with services[0].client() as http:
            tokens = [_token(http, creds) for creds in devices]
        answers = asyncio.run(_post_everything([s.url for s in services], tokens))
    for service in services:  # and no group met a deadlock (ingest/store.py `store_group`)
        assert "retrying once" not in service.log(), service.log()
    assert Counter(status for status, _a, _d in answers) == {200: 2 * len(devices) * POSTS}
    assert sum(a for _s, a, _d in answers) == len(devices) * POSTS * READINGS
    assert sum(d for _s, _a, d in answers) == len(devices) * POSTS * READINGS

    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            readings = conn.execute(text("SELECT device_id, seq FROM readings")).all()
            states = dict(conn.execute(text("SELECT device_id, cars FROM device_state")).all())
            outbox = conn.execute(
                text("SELECT topic, payload, retain FROM mqtt_outbox ORDER BY id")
            ).all()
    finally:
        engine.dispose()
    expected = {(cid, seq) for cid, _secret in devices for seq in range(POSTS * READINGS)}
    assert len(readings) == len(expected) and set(readings) == expected  # each stored once
    last = POSTS * READINGS - 1
    assert states == {cid: _cars(n, last) for n, (cid, _secret) in enumerate(devices)}
    published = Counter(
        (m["device_id"], r["seq"])
        for _topic, payload, retain in outbox
        if not retain
        for m in [json.loads(payload)]
        for r in m["readings"]
    )
    assert set(published) == expected and set(published.values()) == {1}  # each sent once
    newest = {json.loads(p)["lot"]: json.loads(p) for _t, p, retain in outbox if retain}
    for at, lot in enumerate(LOTS):
        boards = range(at * PER_LOT, (at + 1) * PER_LOT)
        assert newest[lot]["cars"] == sum(_cars(n, last) for n in boards), lot
        assert newest[lot]["devices"] == PER_LOT
