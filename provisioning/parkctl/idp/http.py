"""HTTP to an external authorization server: trust, URL rules and rate limits in one place.

- A private CA comes from `PARK_IDP_CA_CERT`, else the system store.
- `https://` always; `http://` only to a loopback host (tests, the demo), because a board's
  secret and parkctl's own credentials cross this connection.
- A 429 is waited out, never hammered: the wait is the server's `x-ratelimit-reset` (Auth0: UNIX
  time when the bucket refills) or `Retry-After`, else a doubling pause; every thread sharing the
  connection waits for the same moment, so a fleet run of many boards sends one request after the
  reset, not one per board.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.api.lean_httpx import httpx
from provisioning.parkctl.api.transport import send

MAX_WAIT_S = 120.0  # a longer rate-limit pause is an error the operator sees, not a hang
MAX_ATTEMPTS = 6


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine (localhost or a loopback address)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> str:
    """`url` if it may carry secrets: https, or http to a loopback host; else ParkctlError."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return url
    raise ParkctlError(f"{what} {url!r} must be https:// (plain http:// only to a loopback host)")


def _verify() -> bool | ssl.SSLContext:
    ca = os.environ.get("PARK_IDP_CA_CERT")
    if not ca:
        return True
    try:
        return ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as error:
        raise ParkctlError(f"cannot use PARK_IDP_CA_CERT {ca}: {error}") from None


def _wait_s(response: httpx.Response, attempt: int, now: float) -> float:
    """How long to wait after a 429: the reset time, else Retry-After, else 1, 2, 4... s."""
    reset = response.headers.get("x-ratelimit-reset")
    if reset is not None:
        try:
            return max(0.0, float(reset) - now) + 0.05
        except ValueError:
            pass
    retry_after = response.headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            pass
    return float(2**attempt)


class IdpHttp:
    """One connection (pool) to the external server at `base`; thread-safe."""

    def __init__(self, base: str, timeout: float = 15.0) -> None:
        self.base = check_url(base.rstrip("/"), "authorization server URL")
        self._http = httpx.Client(timeout=timeout, verify=_verify())
        self._lock = threading.Lock()
        self._not_before = 0.0  # monotonic: no request before this (a rate-limit reset)
        self.waited_s = 0.0  # total time spent waiting for rate limits

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """`method url`, waiting out 429s (see the module docstring); never raises for an HTTP
        status, only for a connection failure or a rate limit that does not clear."""
        for attempt in range(MAX_ATTEMPTS):
            with self._lock:
                pause = self._not_before - time.monotonic()
            if pause > 0:
                time.sleep(pause)
                self.waited_s += pause
            response = self._send(method, url, **kwargs)
            if response.status_code != 429:
                return response
            wait = _wait_s(response, attempt, time.time())
            if wait > MAX_WAIT_S:
                break
            with self._lock:
                self._not_before = max(self._not_before, time.monotonic() + wait)
            print(
                f"note: {urlsplit(url).netloc} is rate limiting (429); waiting {wait:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        raise ParkctlError(
            f"{urlsplit(url).netloc} kept answering 429 (rate limited) after {MAX_ATTEMPTS} "
            "tries; run again later"
        )

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        check_url(url, "authorization server URL")
        where = urlsplit(url).netloc
        return send(self._http, where, "give its CA in PARK_IDP_CA_CERT", method, url, **kwargs)


def error_text(response: httpx.Response) -> str:
    """The server's own words for a failure: OAuth's `error_description`, Auth0's `message`,
    RFC 7591's `error_description`, else the HTTP status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error_description", "message", "error"):
            if isinstance(body.get(key), str) and body[key]:
                return f"{response.status_code} {body[key]}"
    return f"{response.status_code} {response.reason_phrase}"
