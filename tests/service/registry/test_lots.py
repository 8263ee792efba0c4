"""Lot records: `/admin/lots`, the capacity and free spaces on `/v1/lots`, audit,
and `parkctl lot ...` against the real service."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from provisioning.service.registry import service
from tests.parkctl.clirunner import invoke
from tests.service.registry.conftest import AdminApp
from tests.service.registry.test_cli import parkctl, parkctl_json
from tools.harness.server import ServiceProcess


def _reader(admin_app: AdminApp) -> dict[str, str]:
    op = admin_app.operator
    token = admin_app.token(op.client_id, op.client_secret, "parkfleet-ingest")
    return {"Authorization": f"Bearer {token}"}


def _post_count(admin_app: AdminApp, client_id: str, secret: str, cars: int) -> None:
    token = admin_app.token(client_id, secret)
    response = admin_app.http.post(
        "/v1/counts",
        json={"readings": [{"seq": 1, "cars": cars}]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text


def test_lot_record_lifecycle_and_occupancy(admin_app: AdminApp) -> None:
    http, admin = admin_app.http, admin_app.headers()
    ctx = http.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as session:
        device, secret = service.create_device(session, ctx.hasher, "test", "north", "gate")
    _post_count(admin_app, device.client_id, secret, 30)
    reader = _reader(admin_app)

    # Without a record the lot works as before: no capacity, no free.
    (north,) = http.get("/v1/lots", headers=reader).json()["lots"]
    assert {k: north[k] for k in ("lot", "cars", "devices", "baseline", "flows")} == {
        "lot": "north", "cars": 30, "devices": 1, "baseline": 0, "flows": []
    }  # fmt: skip
    assert "capacity" not in north and "free" not in north

    created = http.post(
        "/admin/lots", json={"name": "north", "capacity": 120, "label": "North car park"},
        headers=admin,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/admin/lots/north"
    assert created.json()["capacity"] == 120
    again = http.post("/admin/lots", json={"name": "north"}, headers=admin)
    assert again.status_code == 409 and again.json()["error"] == "conflict"

    made_of: dict[str, object] = {"baseline": 0, "since": None, "flows": [], "counted": 30,
                                  "drift": False, "over_capacity": False}  # fmt: skip
    lots = http.get("/v1/lots", headers=reader).json()["lots"]
    assert lots == [
        {"lot": "north", "label": "North car park", "cars": 30, "devices": 1,
         "capacity": 120, "free": 90} | made_of,
    ]  # fmt: skip
    detail = http.get("/v1/lots/north", headers=reader).json()
    assert (detail["capacity"], detail["free"], detail["cars"]) == (120, 90, 30)

    # A lot with a record and no board yet is listed, empty.
    assert (
        http.post("/admin/lots", json={"name": "south", "capacity": 10}, headers=admin).status_code
        == 201
    )
    south = http.get("/v1/lots/south", headers=reader).json()
    assert south == {
        "lot": "south", "label": "south", "cars": 0, "devices": [], "capacity": 10, "free": 10,
    } | made_of | {"counted": 0}  # fmt: skip

    # PATCH: only the fields sent; null clears the capacity; more cars than spaces is 0 free.
    patched = http.patch("/admin/lots/north", json={"capacity": 20}, headers=admin).json()
    assert (patched["capacity"], patched["label"]) == (20, "North car park")
    assert http.get("/v1/lots/north", headers=reader).json()["free"] == 0
    cleared = http.patch("/admin/lots/north", json={"capacity": None}, headers=admin).json()
    assert cleared["capacity"] is None
    assert "free" not in http.get("/v1/lots/north", headers=reader).json()

    assert http.delete("/admin/lots/south", headers=admin).status_code == 204
    assert http.get("/admin/lots/south", headers=admin).status_code == 404
    assert http.get("/v1/lots/south", headers=reader).status_code == 404
    assert [lot["name"] for lot in http.get("/admin/lots", headers=admin).json()["items"]] == [
        "north"
    ]

    actions = [
        (e["action"], e["target"])
        for e in http.get("/admin/audit", headers=admin).json()["items"]
        if e["action"].startswith("lot.")
    ]
    assert actions == [
        ("lot.delete", "south"), ("lot.update", "north"), ("lot.update", "north"),
        ("lot.create", "south"), ("lot.create", "north"),
    ]  # fmt: skip


def test_bad_lot_input_is_refused_and_changes_nothing(admin_app: AdminApp) -> None:
    http, admin = admin_app.http, admin_app.headers()
    bad: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/admin/lots", {"name": "a/b", "capacity": 1}),
        ("POST", "/admin/lots", {"name": "ok", "capacity": -1}),
        ("POST", "/admin/lots", {"name": "ok", "capacity": "many"}),
        ("POST", "/admin/lots", {"name": "ok", "label": "x\u0000y"}),
        ("POST", "/admin/lots", {"name": "ok", "colour": "red"}),
        ("POST", "/admin/lots", {"capacity": 3}),
    ]
    for method, path, body in bad:
        response = http.request(method, path, json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["error"] == "invalid_request"
    assert http.patch("/admin/lots/none", json={"capacity": 1}, headers=admin).status_code == 404
    assert http.get("/admin/lots", headers=admin).json()["items"] == []
    # Without a token, or with a read-only one, nothing.
    assert http.post("/admin/lots", json={"name": "ok"}).status_code == 401
    assert http.post(
        "/admin/lots", json={"name": "ok"}, headers=_reader(admin_app)
    ).status_code in (
        401,
        403,
    )


def test_parkctl_lot_verbs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**os.environ, "PARK_CACHE_DIR": str(tmp_path)}
    with ServiceProcess(data, env=env) as server:
        created = parkctl_json("admin", "create", "--data-dir", str(data), env=env)
        cli_env = {
            **env,
            "PARK_SERVER": server.url,
            "PARK_CLIENT_ID": created["client_id"],
            "PARK_CLIENT_SECRET": created["client_secret"],
        }

        def run(*args: str, code: int = 0) -> str:
            result = invoke(list(args), env=cli_env)
            assert result.exit_code == code, (result.output, result.exception)
            return result.output

        made = json.loads(
            run("lot", "create", "west", "--capacity", "40", "--label", "West", "--json")
        )
        assert (made["name"], made["capacity"], made["label"]) == ("west", 40, "West")
        assert "West" in run("lot", "list")
        assert (
            json.loads(run("lot", "set", "west", "--capacity", "none", "--json"))["capacity"]
            is None
        )
        assert json.loads(run("lot", "show", "west", "--json"))["label"] == "West"
        run("lot", "delete", "west")
        missing = invoke(["lot", "show", "west"], env=cli_env)
        assert missing.exit_code == 1 and "no lot record named 'west'" in str(missing.exception)
        nothing = invoke(["lot", "set", "west"], env=cli_env)
        assert nothing.exit_code == 1 and "nothing to change" in str(nothing.exception)
        listed = json.loads(run("lot", "list", "--json"))
        assert listed == []
        # A recount, by the command line, of a lot with a record.
        run("lot", "create", "east", "--capacity", "10")
        recount = json.loads(run("lot", "recount", "east", "4", "--json"))
        assert (recount["lot"], recount["cars"], recount["previous"]) == ("east", 4, 0)
        assert "recounted: 2 car(s)" in run("lot", "recount", "east", "2")


def test_a_viewer_reads_counts_and_nothing_else(tmp_path: Path) -> None:
    """`parkctl admin create --role viewer`: counts:read, no admin audience at all."""
    data = tmp_path / "data"
    env = {**os.environ, "PARK_CACHE_DIR": str(tmp_path)}
    with ServiceProcess(data, env=env) as server, server.client() as http:
        viewer = parkctl_json(
            "admin", "create", "--data-dir", str(data), "--role", "viewer", "--name", "wall",
            env=env,
        )  # fmt: skip
        auth = (viewer["client_id"], viewer["client_secret"])
        refused = http.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "audience": "parkfleet-admin"},
            auth=auth,
        )
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_target"
        token = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)
        assert token.status_code == 200 and token.json()["scope"] == "counts:read"
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        assert http.get("/v1/lots", headers=bearer).status_code == 200
        assert http.get("/admin/lots", headers=bearer).status_code == 401
        bad = parkctl(
            "admin", "create", "--data-dir", str(data), "--role", "root", env=env, ok=False
        )  # fmt: skip
        assert bad.returncode == 1 and "role must be one of admin, viewer" in bad.stderr


def test_history_endpoint(admin_app: AdminApp) -> None:
    http = admin_app.http
    ctx = http.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as session:
        device, secret = service.create_device(session, ctx.hasher, "test", "north", "gate")
    token = admin_app.token(device.client_id, secret)
    t0 = 1_800_000_000
    posted = http.post(
        "/v1/counts",
        json={
            "readings": [{"seq": 1, "cars": 4, "ts": t0 + 10}, {"seq": 2, "cars": 6, "ts": t0 + 70}]
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert posted.status_code == 200
    reader = _reader(admin_app)
    got = http.get(
        "/v1/lots/north/history",
        params={"from": "2027-01-15T08:00:00Z", "to": str(t0 + 180), "step": "60"},
        headers=reader,
    ).json()
    assert got == {
        "lot": "north", "from": t0, "to": t0 + 180, "step": 60,
        "t": [t0, t0 + 60, t0 + 120, t0 + 180], "cars": [None, 4, 6, 6],
    }  # fmt: skip
    for params in ({"step": "90"}, {"from": "soon"}, {"step": "-60"}, {"from": "9", "to": "5"}):
        bad = http.get("/v1/lots/north/history", params=params, headers=reader)
        assert bad.status_code == 422 and bad.json()["error"] == "invalid_request", params
    assert http.get("/v1/lots/north/history").status_code == 401
    default = http.get("/v1/lots/north/history", headers=reader).json()
    assert default["step"] == 300 and len(default["t"]) in (288, 289)


def test_lot_lists_are_paged_by_name(admin_app: AdminApp) -> None:
    """`/admin/lots` and `/v1/lots` answer `limit` lots at a time (100 by default) with a
    `next_cursor` to follow; the last page says None."""
    http, admin = admin_app.http, admin_app.headers()
    for name in ("c-lot", "a-lot", "b-lot"):
        assert http.post("/admin/lots", json={"name": name}, headers=admin).status_code == 201
    for path, key, headers in (
        ("/admin/lots", "items", admin),
        ("/v1/lots", "lots", _reader(admin_app)),
    ):
        first = http.get(path, params={"limit": 2}, headers=headers).json()
        assert [lot.get("name", lot.get("lot")) for lot in first[key]] == ["a-lot", "b-lot"]
        assert first["next_cursor"] == "b-lot"
        rest = http.get(path, params={"limit": 2, "cursor": "b-lot"}, headers=headers).json()
        assert [lot.get("name", lot.get("lot")) for lot in rest[key]] == ["c-lot"]
        assert rest["next_cursor"] is None
        too_many = http.get(path, params={"limit": 100_000}, headers=headers)
        assert too_many.status_code == 422, too_many.text
