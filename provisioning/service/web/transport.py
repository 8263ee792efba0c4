"""Connection limits for `parkctl serve`: uvicorn's httptools protocol with deadlines.

uvicorn bounds only the idle time between requests (`timeout_keep_alive`); a client that sends
a request head or body slowly, or never finishes it, holds its connection and memory for as
long as it likes (3,000 connections that send 11 of 100 body bytes would hold the service).
This protocol adds:

- a head deadline: from the connection's opening, or a new request's first byte, to the end of
  its headers (`PARK_HEADER_TIMEOUT_S`, 10 s);
- a body deadline: from the end of the headers to the end of the body
  (`PARK_BODY_TIMEOUT_S`, 30 s: a 64 KB batch over a poor cellular link);
- at most `PARK_MAX_CONNECTIONS_PER_SOURCE` (128) open connections per source address; beyond
  it a new connection is closed at once.

A late request is answered 408 (RFC 9110 §15.5.9) with the standard error body and the
connection closed; one log line says so. Headers stay bounded by httptools' and uvicorn's
limits (a request line or header over 64 KB is 400), bodies by each endpoint's own limit.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import Counter
from typing import Any, ClassVar

from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from provisioning.service.config import Settings

log = logging.getLogger(__name__)

TIMED_OUT = "parkfleet.timed_out"  # set in the request's scope state when a deadline struck
_408_BODY = b'{"error":"invalid_request","error_description":"request not received in time"}'
_408 = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\n"
    b"cache-control: no-store\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n" % len(_408_BODY)
) + _408_BODY


class BoundedProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with head and body deadlines and a per-source connection cap.

    Configured by subclassing (`for_settings`): uvicorn builds one instance per connection.
    """

    header_timeout_s: ClassVar[float] = 10.0
    body_timeout_s: ClassVar[float] = 30.0
    per_source: ClassVar[int] = 128
    open_by_source: ClassVar[Counter[str]] = Counter()
    warned_at: ClassVar[dict[str, float]] = {}

    _deadline: asyncio.TimerHandle | None = None
    _source = ""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._source = self.client[0] if self.client else "?"
        opened = self.open_by_source[self._source] + 1
        self.open_by_source[self._source] = opened
        if opened > self.per_source:
            now = self.loop.time()
            # One line per source a minute, not one per refused connection.
            if now - self.warned_at.get(self._source, float("-inf")) >= 60:
                self.warned_at[self._source] = now
                if len(self.warned_at) > 10_000:
                    self.warned_at.clear()
                log.warning(
                    "%s has %d connections open: refusing more", self._source, self.per_source
                )
            self.transport.close()
            return
        self._arm(self.header_timeout_s, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        left = self.open_by_source[self._source] - 1
        if left > 0:
            self.open_by_source[self._source] = left
        else:
            self.open_by_source.pop(self._source, None)
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # a new request on a kept-alive connection
            self._arm(self.header_timeout_s, "headers")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout_s, "body")

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._late, seconds, part)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _late(self, seconds: float, part: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                self.transport.close()  # an answer is on its way: nothing else can be sent
                return
            # The application (waiting for the body) sees a disconnect and answers nothing.
            cycle.scope["state"][TIMED_OUT] = True
            cycle.disconnected = True
            cycle.message_event.set()
        log.info("408 to %s: request %s not received within %g s", self._source, part, seconds)
        self.transport.write(_408)
        self.transport.close()


def protocol_for(settings: Settings) -> type[BoundedProtocol]:
    """The protocol class for uvicorn's `http=` with the limits of `settings`."""
    return type(
        "ParkfleetProtocol",
        (BoundedProtocol,),
        {
            "header_timeout_s": settings.header_timeout_s,
            "body_timeout_s": settings.body_timeout_s,
            "per_source": settings.max_connections_per_source,
            "open_by_source": Counter(),
            "warned_at": {},
        },
    )


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging configuration plus this package's loggers, in the same format (the
    one-line reports of slow or vanished clients, failed audits and the like)."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["provisioning"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return config
