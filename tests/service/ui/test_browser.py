"""The dashboard in a real browser (Debian's Chromium under Playwright): sign-in, live counts,
board actions, the viewer role, CSRF, escaping, and the phone layout."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.service.ui.conftest import XSS_NAME, Fleet

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def sign_in(page: Any, fleet: Fleet, who: tuple[str, str]) -> None:
    """With the keyboard alone: the ID field has focus, Tab to the secret, Enter to send."""
    page.goto(f"{fleet.server.url}/ui/")
    assert "/ui/login" in page.url
    # `autofocus` applies once the page has rendered, which a loaded machine may not have yet
    # at the `load` event: wait for it, rather than type into nothing.
    page.wait_for_function("document.activeElement && document.activeElement.id === 'client_id'")
    page.keyboard.type(who[0])
    page.keyboard.press("Tab")
    page.keyboard.type(who[1])
    page.keyboard.press("Enter")
    page.wait_for_url(f"{fleet.server.url}/ui/")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    opened = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    opened.on("dialog", on_dialog)
    opened.dialogs = dialogs
    yield opened
    context.close()


def test_sign_in_and_counts_arrive_live(page: Any, fleet: Fleet) -> None:
    sign_in(page, fleet, fleet.admin)
    card = page.locator("li.lot-card", has_text="North car park")
    assert card.locator("[data-field=capacity]").inner_text() == "40"
    page.wait_for_selector("[data-live-status]:has-text('live')")
    page.evaluate("window.stillHere = true")  # gone if the page reloads
    token = fleet.device_token("north-gate")
    # The board's next reading (seq 141 after the seeded 1..140) is current at once.
    assert fleet.post(token, 141, 17, {"rssi": -60, "uptime_s": 7200, "free_heap": 90000}) == 200
    # The bound: within 2 s of the post's answer, without a reload.
    total = 17 + fleet.last[XSS_NAME]  # the lot's other board keeps its count
    expect(card.locator("[data-field=cars]")).to_have_text(str(total), timeout=2000)
    assert card.locator("[data-field=free]").inner_text() == str(max(0, 40 - total))
    assert page.evaluate("window.stillHere") is True
    page.screenshot(path=str(fleet.screenshots / "dashboard-desktop.png"), full_page=True)
    page.goto(f"{fleet.server.url}/ui/lots/north")
    assert page.locator("figure.chart path.line").get_attribute("d")
    page.screenshot(path=str(fleet.screenshots / "dashboard-lot.png"), full_page=True)
    page.goto(f"{fleet.server.url}/ui/boards")
    page.screenshot(path=str(fleet.screenshots / "dashboard-boards.png"), full_page=True)
    # The browser holds no token and no secret: only the opaque HttpOnly session cookie.
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == ["parkfleet_session"]
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Strict"
    storage = page.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)")
    assert fleet.admin[1] not in storage and "ey" not in storage
    assert fleet.admin[1] not in page.content()


def test_disable_a_board_from_its_page(page: Any, fleet: Fleet) -> None:
    token = fleet.device_token("south-1")
    assert fleet.post(token, 1, 3) == 200
    sign_in(page, fleet, fleet.admin)
    page.goto(f"{fleet.server.url}/ui/boards")
    page.get_by_role("link", name="south-1").click()
    # With the keyboard: the action link, then the confirmation button (it has the focus).
    page.get_by_role("link", name="Disable…").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/disable$"))
    assert page.evaluate("document.activeElement.textContent") == "Disable south-1"
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*done=disable$"))
    assert "(disabled)" in page.locator(".facts").inner_text()
    assert fleet.post(token, 2, 4) == 401  # its next post is refused
    assert "device.disable" in page.content()  # and the audit shows it
    page.get_by_role("link", name="Enable…").click()
    page.get_by_role("button", name="Enable south-1").click()
    page.wait_for_url(re.compile(r".*done=enable$"))


def test_rotate_secret_shows_it_once_with_a_copy_button(page: Any, fleet: Fleet) -> None:
    sign_in(page, fleet, fleet.admin)
    client_id = fleet.boards["north-gate"][0]
    page.goto(f"{fleet.server.url}/ui/boards/{client_id}")
    page.get_by_role("link", name="Rotate secret…").click()
    page.get_by_role("button", name=re.compile("Rotate the secret")).click()
    secret = page.locator("#secret").input_value()
    assert len(secret) == 43
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy").click()
    page.wait_for_selector("button:has-text('Copied')")
    page.reload()  # shown once: a reload neither shows it again nor rotates again
    assert secret not in page.content() and "shown once already" in page.content()


def test_viewer_sees_no_actions_and_a_forged_post_is_refused(page: Any, fleet: Fleet) -> None:
    sign_in(page, fleet, fleet.viewer)
    assert page.locator(".role").text_content() == "viewer"
    client_id = fleet.boards["north-gate"][0]
    page.goto(f"{fleet.server.url}/ui/boards/{client_id}")
    assert page.get_by_role("link", name=re.compile("Disable|Enable|Rotate")).count() == 0
    assert "Audit" not in page.content()
    csrf = page.locator("input[name=csrf]").first.input_value()
    forged = page.request.post(
        f"{fleet.server.url}/ui/boards/{client_id}/disable", form={"csrf": csrf}
    )
    assert forged.status == 403
    token = fleet.device_token("north-gate")
    assert fleet.post(token, 1050, 5) == 200  # still enabled


def test_a_post_without_the_csrf_token_is_refused(page: Any, fleet: Fleet) -> None:
    sign_in(page, fleet, fleet.admin)
    client_id = fleet.boards["north-gate"][0]
    for form in ({}, {"csrf": "guess"}):
        response = page.request.post(f"{fleet.server.url}/ui/boards/{client_id}/disable", form=form)
        assert response.status == 403
    token = fleet.device_token("north-gate")
    assert fleet.post(token, 1051, 5) == 200


def test_a_board_named_like_markup_is_shown_as_text(page: Any, fleet: Fleet) -> None:
    sign_in(page, fleet, fleet.admin)
    page.goto(f"{fleet.server.url}/ui/boards")
    page.wait_for_load_state("networkidle")
    assert page.get_by_role("link", name=XSS_NAME).count() == 1
    assert page.locator("img").count() == 0
    client_id = fleet.boards[XSS_NAME][0]
    page.goto(f"{fleet.server.url}/ui/boards/{client_id}")
    assert page.locator("h1").inner_text() == XSS_NAME
    assert page.locator("img").count() == 0
    assert page.dialogs == []


def test_phone_viewport_has_no_sideways_scroll(browser: Any, fleet: Fleet) -> None:
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True)
    page = context.new_page()
    sign_in(page, fleet, fleet.admin)
    urls = ["/ui/", "/ui/lots/north", "/ui/boards", f"/ui/boards/{fleet.boards['north-gate'][0]}"]
    for path in urls:
        page.goto(fleet.server.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], (path, width)
        if path == "/ui/":
            page.screenshot(path=str(fleet.screenshots / "dashboard-phone.png"), full_page=True)
    context.close()
