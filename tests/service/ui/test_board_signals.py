"""What an operator reads on a new install, in a real browser (Debian's Chromium under
Playwright): a healthy board is not flagged, a board that missed its own interval is offline
with its count marked stale (and still in the lot's total, as the API says), a gate board's
counters, a young lot's chart and sparkline, and a full lot that says so."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from provisioning.common.scopes import COUNTS_READ, INGEST_AUDIENCE
from tests.service.ui.conftest import Fleet
from tests.service.ui.test_browser import DESKTOP, PHONE, sign_in

HEALTHY = {"spool_depth": 0, "dropped": 0, "rssi": -60, "free_heap": 120_000,
           "reset_cause": "power_on", "uptime_s": 3600}  # fmt: skip


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    yield context.new_page()
    context.close()


def _token(fleet: Fleet, who: tuple[str, str], **params: str) -> str:
    with fleet.server.client() as http:
        response = http.post(
            "/oauth/token", data={"grant_type": "client_credentials", **params}, auth=who
        )
        response.raise_for_status()
        return str(response.json()["access_token"])


def _admin(fleet: Fleet, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    token = _token(fleet, fleet.admin, audience="parkfleet-admin")
    with fleet.server.client() as http:
        response = http.request(
            method, path, json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code in (200, 201), response.text
        return dict(response.json())


def _board(fleet: Fleet, lot: str, name: str) -> tuple[str, str]:
    """A new board in `lot`: (client_id, its device token)."""
    made = _admin(fleet, "POST", "/admin/devices", {"lot": lot, "name": name})
    who = (str(made["client_id"]), str(made["client_secret"]))
    return who[0], _token(fleet, who)


def _post(fleet: Fleet, token: str, body: dict[str, Any]) -> None:
    with fleet.server.client() as http:
        response = http.post("/v1/counts", json=body, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200, response.text


def _api_lot(fleet: Fleet, lot: str) -> dict[str, Any]:
    read = _token(fleet, fleet.viewer, audience=INGEST_AUDIENCE, scope=COUNTS_READ)
    with fleet.server.client() as http:
        response = http.get(f"/v1/lots/{lot}", headers={"Authorization": f"Bearer {read}"})
        return dict(response.json())


def _goto_listed(page: Any, url: str, client_id: str) -> Any:
    """Open a page that lists boards and return the board's row, reloading while the boards
    list (read at most once a second for all sessions: ui/offloop.py) predates the board."""
    deadline = time.monotonic() + 5
    page.goto(url)
    row = page.locator(f"tr[data-device='{client_id}']")
    while not row.count() and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    return row


def _online(
    page: Any, fleet: Fleet, lot: str, name: str, interval_s: int, path: str
) -> tuple[str, str, Any]:
    """A new board that posted one reading with a healthy report, and its row on `path`
    (signed in as the admin), online: (client_id, its token, the row)."""
    client_id, token = _board(fleet, lot, name)
    health = {**HEALTHY, "interval_s": interval_s}
    _post(fleet, token, {"readings": [{"seq": 1, "cars": 6}], "health": health})
    sign_in(page, fleet, fleet.admin)
    row = _goto_listed(page, fleet.server.url + path, client_id)
    expect(row.locator(".status")).to_have_text("online")
    return client_id, token, row


def test_a_healthy_uploading_board_is_not_flagged(page: Any, fleet: Fleet) -> None:
    client_id, token, row = _online(page, fleet, "west", "west-1", 30, "/ui/boards?q=west-1")
    assert "unwell" not in (row.get_attribute("class") or "")
    assert row.locator(".problem").count() == 0
    # A backlog after the post is worth a look.
    _post(fleet, token, {"readings": [{"seq": 2, "cars": 6}], "health": {**HEALTHY,
          "interval_s": 30, "spool_depth": 40}})  # fmt: skip
    # The boards list is read at most once a second for every session (ui/offloop.py).
    deadline = time.monotonic() + 5
    while True:
        page.reload()
        if row.locator(".problem").count() or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    expect(row.locator(".problem")).to_have_text("40 readings waiting in spool")
    # Its health in the boards table's units, not a key dump.
    page.goto(f"{fleet.server.url}/ui/boards/{client_id}")
    facts = page.locator(".facts").first.inner_text()
    assert "117 KB" in facts and "1 h" in facts and "free_heap" not in facts
    assert "Reads every\n30 s" in facts and "Offline after\n1 min" in facts


def test_a_board_is_offline_after_its_own_interval(page: Any, fleet: Fleet) -> None:
    client_id, _token, row = _online(page, fleet, "dock", "dock-1", 1, "/ui/lots/dock")
    assert page.locator(".stale-note").count() == 0
    [entry] = _api_lot(fleet, "dock")["devices"]
    assert (entry["online"], entry["stale"]) == (True, False)
    # 2 periods of 1 s + 15 s of slack: offline at 17 s, where the 60 s default waits 135 s.
    time.sleep(18)
    page.reload()
    expect(row.locator(".status")).to_have_text("offline")
    expect(row.locator(".stale")).to_have_text("stale")
    note = page.locator(".stale-note").inner_text()
    assert "dock-1" in note and "held in the total" in note
    # Held: the dashboard's total is the API's (and so the MQTT retained total's).
    assert page.locator("[data-lot=dock] [data-field=cars]").inner_text() == "6"
    detail = _api_lot(fleet, "dock")
    assert detail["cars"] == 6  # and the retained MQTT total: the same sum (lots/occupancy.py)
    assert (detail["devices"][0]["online"], detail["devices"][0]["stale"]) == (False, True)
    page.goto(f"{fleet.server.url}/ui/")
    card = page.locator("li.lot-card[data-lot=dock] .stale-note").inner_text()
    assert card == "stale 1 offline board: last count held in the total", card
    page.goto(f"{fleet.server.url}/ui/boards?status=offline")
    assert page.locator(f"tr[data-device='{client_id}']").count() == 1


def test_a_gate_board_shows_its_counters(page: Any, fleet: Fleet) -> None:
    client_id, token = _board(fleet, "gatelot", "gate-in-1")
    _post(fleet, token, {"readings": [{"seq": 1, "in": 10, "out": 3},
                                      {"seq": 2, "in": 15, "out": 4}]})  # fmt: skip
    sign_in(page, fleet, fleet.admin)
    page.goto(f"{fleet.server.url}/ui/boards/{client_id}")
    facts = page.locator(".facts").first.inner_text()
    assert "Cars in\n15" in facts and "Cars out\n4" in facts and "In the lot\n11" in facts
    page.screenshot(path=str(fleet.screenshots / "dashboard-gate-board.png"), full_page=True)
    readings = page.get_by_role("region", name="Recent readings").inner_text()
    assert "In\tOut" in readings and "15\t4" in readings and "10\t3" in readings
    for path in (f"/ui/boards/{client_id}", "/ui/boards?q=gate-in-1", "/ui/lots/gatelot"):
        if "boards/" in path:
            page.goto(fleet.server.url + path)
        else:
            _goto_listed(page, fleet.server.url + path, client_id)
        text = page.locator("main").inner_text()
        assert "None" not in text, path
        if "boards/" not in path:
            cell = page.locator(f"tr[data-device='{client_id}'] [data-field=gate]")
            assert cell.inner_text() == "11 (in 15 · out 4)", path
    # Live, as a zone board's cars: the next reading's counters without a reload.
    page.wait_for_selector("[data-live-status]:has-text('live')")
    page.evaluate("window.stillHere = true")
    _post(fleet, token, {"readings": [{"seq": 3, "in": 20, "out": 4}]})
    expect(cell).to_have_text("16 (in 20 · out 4)", timeout=3000)
    assert page.evaluate("window.stillHere") is True


def _first_x(d: str) -> float:
    return float(re.match(r"M([\d.]+),", d).group(1))  # type: ignore[union-attr]


def test_a_young_lot_gets_a_chart_that_shows_its_data(page: Any, fleet: Fleet) -> None:
    _client_id, token = _board(fleet, "young", "young-1")
    now = time.time()
    readings = [{"seq": k, "cars": 3 + k % 4, "ts": now - 1200 + k * 60} for k in range(1, 21)]
    _post(fleet, token, {"readings": readings})
    _admin(fleet, "POST", "/admin/lots", {"name": "quiet", "capacity": 10, "label": "Quiet"})
    sign_in(page, fleet, fleet.admin)
    # The overview: a young lot's sparkline has its last hour; a lot with none says so.
    young = page.locator("li.lot-card[data-lot=young]")
    assert young.locator("svg.spark path").get_attribute("d")
    expect(page.locator("li.lot-card[data-lot=quiet] .spark-empty")).to_have_text("no history yet")
    page.goto(f"{fleet.server.url}/ui/lots/young")
    expect(page.locator(".ranges [aria-current]")).to_have_text("auto (1h)")
    assert [a.inner_text() for a in page.locator(".ranges a").all()] == [
        "auto (1h)", "1h", "24h", "7d", "30d"
    ]  # fmt: skip
    # 20 minutes of a 1 h chart: the line starts a third of the way in, not at the edge.
    d = page.locator("figure.chart path.line").get_attribute("d") or ""
    assert d.count("L") >= 15 and _first_x(d) < 40 + 0.75 * (720 - 48)
    page.screenshot(path=str(fleet.screenshots / "dashboard-young-lot.png"), full_page=True)
    page.goto(f"{fleet.server.url}/ui/lots/young?range=24h")
    d = page.locator("figure.chart path.line").get_attribute("d") or ""
    assert _first_x(d) > 40 + 0.95 * (720 - 48)  # the sliver the automatic range avoids


def test_a_full_lot_says_full(browser: Any, fleet: Fleet) -> None:
    _admin(fleet, "POST", "/admin/lots", {"name": "tiny", "capacity": 3, "label": "Tiny"})
    _client_id, token = _board(fleet, "tiny", "tiny-entrance")
    _post(fleet, token, {"readings": [{"seq": 1, "cars": 2}]})
    context = browser.new_context(viewport=PHONE, is_mobile=True)
    page = context.new_page()
    sign_in(page, fleet, fleet.admin)
    card = page.locator("li.lot-card[data-lot=tiny]")
    expect(card.locator("[data-field=full]")).to_be_hidden()
    page.wait_for_selector("[data-live-status]:has-text('live')")
    _post(fleet, token, {"readings": [{"seq": 2, "cars": 3}]})
    expect(card.locator("[data-field=full]")).to_have_text("full", timeout=3000)
    expect(card.locator("[data-field=full]")).to_be_visible()
    page.goto(f"{fleet.server.url}/ui/lots/tiny")
    expect(page.locator("[data-field=full]")).to_be_visible()
    # On a phone, an unwell board's status badges wrap inside the table's visible box
    # instead of running off its right edge.
    unwell = {"spool_depth": 40, "rssi": -90, "reset_cause": "watchdog", "interval_s": 30}
    _post(fleet, token, {"readings": [{"seq": 3, "cars": 3}], "health": unwell})
    page.goto(f"{fleet.server.url}/ui/boards?q=tiny-entrance")
    page.screenshot(path=str(fleet.screenshots / "dashboard-phone-boards.png"), full_page=True)
    wrap = page.locator(".table-wrap").bounding_box()
    badges = page.locator("td.status-cell .problem").all()
    assert len(badges) == 3 and wrap is not None
    for badge in badges:
        box = badge.bounding_box()
        assert box is not None and box["x"] + box["width"] <= wrap["x"] + wrap["width"], box
    context.close()
