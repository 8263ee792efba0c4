"""The dashboard's sign-in and session rules over plain HTTP against the real service (the
browser tests cover what needs a browser): cookie flags, logout, token expiry, the sign-in
rate limit, security headers, no open redirect, the event stream, asset size."""

from __future__ import annotations

import gzip
import re
import time
from pathlib import Path

import httpx

from tools.harness.clients import register_devices, register_operator
from tools.harness.server import ServiceProcess

STATIC = Path(__file__).resolve().parents[3] / "provisioning" / "service" / "ui" / "static"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _sign_in(http: httpx.Client, who: tuple[str, str], next_: str = "/ui/") -> httpx.Response:
    form = http.get("/ui/login")
    return http.post(
        "/ui/login",
        data={
            "csrf": _csrf(form.text),
            "client_id": who[0],
            "client_secret": who[1],
            "next": next_,
        },
    )


def test_session_cookie_logout_expiry_headers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    who = register_operator(data)
    # Tokens live 5 s here: the session must end with them.
    env = {"PARK_METRICS_PUBLIC": "1"}  # the streams gauge is read below without a token
    with (
        ServiceProcess(data, extra_args=["--token-ttl", "5"], env=env) as server,
        server.client() as http,
    ):
        page = http.get("/ui/")
        assert page.status_code == 303 and page.headers["location"] == "/ui/login?next=%2Fui%2F"
        signed = _sign_in(http, who, next_="https://evil.example/")
        assert (
            signed.status_code == 303 and signed.headers["location"] == "/ui/"
        )  # no open redirect
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert who[1] not in signed.text and "access_token" not in signed.text
        page = http.get("/ui/")
        assert page.status_code == 200
        headers = page.headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "unsafe-inline" not in headers["content-security-policy"]
        assert headers["referrer-policy"] == "same-origin"
        assert headers["cache-control"] == "no-store"
        assert "<script>" not in page.text
        # No inline script or style anywhere: every <script> has a src.
        assert re.findall(r"<script(?![^>]*\bsrc=)", page.text) == []
        assert "style=" not in page.text

        # The live stream answers for a session only.
        with httpx.stream("GET", f"{server.url}/ui/events") as anonymous:
            assert anonymous.status_code == 401
        with http.stream("GET", "/ui/events") as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"
            metrics = httpx.get(f"{server.url}/metrics").text
            assert "parkfleet_dashboard_streams 1.0" in metrics

        # Logout needs the CSRF token, then ends the session at once, and its open stream.
        assert http.post("/ui/logout", data={}).status_code == 403
        assert http.get("/ui/").status_code == 200
        csrf = _csrf(http.get("/ui/").text)
        with http.stream("GET", "/ui/events") as stream:
            lines = stream.iter_lines()
            assert next(lines) == "retry: 2000"
            out = http.post("/ui/logout", data={"csrf": csrf})
            assert out.status_code == 303
            ended = time.monotonic()
            for _line in lines:  # ends when the server closes the stream
                assert time.monotonic() - ended < 8, "the stream outlived the session"
        assert http.get("/ui/").status_code == 303

        # A new session ends when its tokens expire.
        assert _sign_in(http, who).status_code == 303
        assert http.get("/ui/").status_code == 200
        time.sleep(6)
        assert http.get("/ui/").status_code == 303


def test_sign_in_is_refused_and_rate_limited(tmp_path: Path) -> None:
    data = tmp_path / "data"
    who = register_operator(data)
    with ServiceProcess(data) as server, server.client() as http:
        # Without the form's CSRF token: refused before any credential is looked at.
        bare = http.post("/ui/login", data={"client_id": who[0], "client_secret": who[1]})
        assert bare.status_code == 403
        wrong = _sign_in(http, (who[0], "not-the-secret"))
        assert wrong.status_code == 401 and "Wrong client ID or secret" in wrong.text
        assert "not-the-secret" not in wrong.text
        # Guesses at one operator: its client ID's failures (burst 10) are spent, so a wrong
        # secret is 429, but the right one still signs in: guessing locks nobody out.
        statuses = [_sign_in(http, (who[0], f"guess-{n}")).status_code for n in range(10)]
        assert statuses[:9] == [401] * 9 and statuses[-1] == 429, statuses
        assert _sign_in(http, who).status_code == 303
        # The address's failed sign-ins (burst 20): then even the right secret waits.
        statuses = [_sign_in(http, (f"op_x{n}", "guess")).status_code for n in range(11)]
        assert statuses[:10] == [401] * 10 and statuses[-1] == 429, statuses
        limited = _sign_in(http, who)
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0


def test_overview_assets_are_small() -> None:
    """The overview page's JavaScript and CSS, compressed, against the 150 KB budget."""
    total = sum(len(gzip.compress(path.read_bytes())) for path in STATIC.iterdir())
    assert total < 150 * 1024, total


def test_over_tls_the_cookie_is_secure_and_host_only(tmp_path: Path) -> None:
    from tools.harness.pki import make_pki

    pki = make_pki(tmp_path / "pki")
    data = tmp_path / "data"
    who = register_operator(data)
    with (
        ServiceProcess(data, tls=(pki.server_cert, pki.server_key)) as server,
        httpx.Client(base_url=server.url, verify=str(pki.ca_pem), timeout=10) as http,
    ):
        signed = _sign_in(http, who)
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"]
        # RFC 6265bis §4.1.3.2: `__Host-` cookies are Secure, Path=/ and have no Domain.
        assert cookie.startswith("__Host-parkfleet=") and "Secure" in cookie
        assert "Domain" not in cookie and "HttpOnly" in cookie
        page = http.get("/ui/")
        assert page.status_code == 200
        assert page.headers.get_list("strict-transport-security") == ["max-age=31536000"]
        assert page.headers.get_list("x-content-type-options") == ["nosniff"]


def test_every_dashboard_list_is_paged(tmp_path: Path) -> None:
    """Boards, a lot's boards and the lots are shown PER_PAGE at a time (at most MAX_PER_PAGE),
    with links to the neighbouring pages; an out-of-range page is clamped, not an error."""
    data = tmp_path / "data"
    who = register_operator(data)
    register_devices(data, 5, lot="north")
    register_devices(data, 2, lot="south")
    with ServiceProcess(data) as server, server.client() as http:
        assert _sign_in(http, who).status_code == 303
        first = http.get("/ui/boards", params={"per_page": "3", "sort": "name"})
        assert first.status_code == 200
        assert first.text.count('<tr class="') == 3 and "Page 1 of 3 (7 in all)" in first.text
        following = re.search(r'rel="next" href="\?([^"]+)"', first.text)
        assert following is not None and "sort=name" in following.group(1)
        second = http.get("/ui/boards?" + following.group(1).replace("&amp;", "&"))
        assert "Page 2 of 3" in second.text and 'rel="prev"' in second.text
        last = http.get("/ui/boards", params={"per_page": "3", "page": "99"})
        assert "Page 3 of 3" in last.text and last.text.count('<tr class="') == 1
        for odd in ("0", "-1", "\u0663", "1e3", "9" * 40):
            assert http.get("/ui/boards", params={"page": odd}).status_code == 200
        capped = http.get("/ui/boards", params={"per_page": "100000"})
        assert capped.text.count('<tr class="') == 7
        lot = http.get("/ui/lots/north", params={"per_page": "2"})
        assert lot.text.count('<tr class="') == 2 and "Page 1 of 3 (5 in all)" in lot.text
        lots = http.get("/ui/", params={"per_page": "1"})
        assert lots.text.count('class="lot-card') == 1 and "Page 1 of 2" in lots.text
