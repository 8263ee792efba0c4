"""MQTT fan-out: the relay, one background thread that drains the outbox to the broker.

The relay owns one database connection (`outbox.RelayReader`) and one broker connection
(`mqttwire.Connection`) and nothing else touches them, so there are no locks on the hot path. It
keeps a window of up to `WINDOW` QoS 1 messages in flight: it reads the outbox in id order a
chunk at a time, writes each chunk with one `sendall()`, reads PUBACKs as they stream back
(MQTT 3.1.1 §4.3.2) and deletes acknowledged messages in batches, as ranges of ids. A message
leaves the outbox only after its PUBACK. If the broker goes away, the messages it did not
acknowledge are read again from the outbox and resent in id order after reconnecting (backoff
0.25 s doubling to 10 s); if the service stops, the rows stay and are sent after the next start.
Delivery is therefore at least once and in order per device, and nothing is lost while the
database survives. Requests call `wake()` after committing, so a batch reaches subscribers
within milliseconds instead of a polling interval.

Several instances on one PostgreSQL database: exactly one relays at a time, the one whose
connection holds the advisory lock `outbox.RELAY_LOCK_KEY`; the others retry every `poll_s` and
one takes over within about a second when the relay's process or connection dies.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine

from provisioning.service.ingest import outbox
from provisioning.service.ingest.mqttwire import (
    BrokerError,
    Connection,
    encode_topic,
    publish_packet,
)
from provisioning.store import sql
from provisioning.store.db import DATABASE_ERRORS

log = logging.getLogger(__name__)

# QoS 1 messages on the wire without their PUBACK. Loopback needs ~1,000 to keep Mosquitto
# busy; 4,000 covers a long-haul link (25,000 msg/s x 150 ms). Packet ids are 16 bits (§2.3.1).
WINDOW = 4000
CHUNK = 500  # messages read from the outbox and written to the socket at a time
# Acknowledged messages are deleted in one transaction per DELETE_EVERY, or DELETE_AFTER_S after
# the first of them: on SQLite each delete takes the one write lock the ingestion API also needs,
# so a trickle of small deletes would stall requests; half a second keeps /metrics current.
DELETE_EVERY = 2000
DELETE_AFTER_S = 0.5
ACK_TIMEOUT_S = 30.0  # no PUBACK for this long with messages out: reconnect and resend
KEEPALIVE_S = 30
# Readiness (GET /readyz) calls the fan-out degraded past either bound, or while the relay is
# cut off from the broker: about 15 s of outage at the relay's sustained rate of ingestion, far
# beyond a healthy backlog (which drains within a second after a burst).
DEGRADED_AGE_S = 30.0
DEGRADED_DEPTH = 100_000
BACKLOG_CACHE_S = 1.0  # /metrics and /readyz share one count per second


@dataclass(frozen=True)
class MqttTarget:
    """Where and as whom to publish; the password never appears in `repr` or `safe_url`."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None

    @property
    def safe_url(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_mqtt_url(url: str) -> MqttTarget:
    """`mqtt://user:pass@host:port` or `mqtts://user:pass@host:port?ca=/path/ca.pem`.

    User and password are percent-decoded (RFC 3986 §3.2.1). Raises `ValueError` naming the
    problem, never echoing the password.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError("MQTT URL must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError("MQTT URL needs a host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("MQTT URL has a bad port") from None
    tls = parts.scheme == "mqtts"
    query = parse_qs(parts.query)
    unknown = set(query) - {"ca"}
    if unknown:
        raise ValueError(f"unknown MQTT URL parameter {sorted(unknown)[0]!r} (only ca=)")
    if "ca" in query and not tls:
        raise ValueError("ca= needs mqtts://")
    return MqttTarget(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
        ca_file=query["ca"][0] if "ca" in query else None,
    )


class OutboxPublisher:
    """The outbox relay to one broker; `start()`/`stop()` from the app's lifespan."""

    def __init__(
        self,
        engine: Engine,
        target: MqttTarget,
        *,
        window: int = WINDOW,
        poll_s: float = 1.0,
        min_backoff_s: float = 0.25,
        max_backoff_s: float = 10.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        if not 1 <= window <= 65535:
            raise ValueError("window must be 1..65535 (MQTT packet ids are 16 bits)")
        self.target = target
        self._engine = engine
        self._window = window
        self._poll_s = poll_s  # also picks up rows committed by other processes
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._client_id = f"parkfleet-relay-{secrets.token_hex(4)}"
        self._wake = threading.Event()
        # The same wake-up as a socket, so waiting for PUBACKs is cut short by new rows.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._active = threading.Event()
        self._thread: threading.Thread | None = None
        self._topics: dict[str, bytes] = {}
        self._backlog = outbox.Backlog(0, 0.0)
        self._backlog_at = float("-inf")
        self._backlog_lock = threading.Lock()
        self._published = Counter(
            "parkfleet_mqtt_published",
            "Outbox messages the broker acknowledged (PUBACK) and that were then deleted.",
            registry=registry,
        )
        self._resent = Counter(
            "parkfleet_mqtt_resent",
            "Messages sent again because the broker went away before acknowledging them.",
            registry=registry,
        )
        self._up = Gauge(
            "parkfleet_mqtt_connected", "1 while connected to the MQTT broker.", registry=registry
        )
        self._role = Gauge(
            "parkfleet_mqtt_relay_active",
            "1 while this instance is the one relaying the outbox (PostgreSQL: holds the lock).",
            registry=registry,
        )
        depth = Gauge(
            "parkfleet_mqtt_outbox_depth",
            "Messages in the outbox waiting for the broker's PUBACK (all instances).",
            registry=registry,
        )
        age = Gauge(
            "parkfleet_mqtt_outbox_oldest_age_seconds",
            "Age of the oldest message in the outbox; 0 when it is empty.",
            registry=registry,
        )
        depth.set_function(lambda: float(self.backlog().depth))
        age.set_function(lambda: self.backlog().oldest_age_s)

    @property
    def connected(self) -> bool:
        """True while this instance relays and is connected to the broker."""
        return self._connected.is_set()

    @property
    def active(self) -> bool:
        """True while this instance holds the relay role."""
        return self._active.is_set()

    def start(self) -> None:
        """Start relaying in the background (connecting and retrying until the broker answers)."""
        log.info("MQTT fan-out to %s", self.target.safe_url)
        self._thread = threading.Thread(target=self._run, name="mqtt-relay", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop relaying and disconnect; unacknowledged rows stay for the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        """New rows were committed: relay now."""
        if not self._wake.is_set():
            self._wake.set()
            # Full: the socket already holds wake-ups nobody has read.
            with contextlib.suppress(BlockingIOError):
                self._wake_w.send(b"\0")

    def _clear_wake(self) -> None:
        self._wake.clear()
        with contextlib.suppress(BlockingIOError):
            while self._wake_r.recv(4096):
                pass

    def backlog(self, tx: sql.Tx | None = None) -> outbox.Backlog:
        """The outbox's depth and oldest age, read at most once per `BACKLOG_CACHE_S` (in `tx`
        if given, else on a pooled connection)."""
        with self._backlog_lock:
            now = time.monotonic()
            if now - self._backlog_at >= BACKLOG_CACHE_S:
                self._backlog_at = now
                try:
                    if tx is not None:
                        self._backlog = outbox.backlog(tx, time.time())
                    else:
                        with self._engine.connect() as conn:
                            self._backlog = outbox.backlog(sql.Tx.of(conn), time.time())
                except DATABASE_ERRORS:
                    # The database is away (readiness says so): keep the last figures rather
                    # than fail the whole /metrics scrape.
                    log.warning("MQTT outbox: backlog unreadable", exc_info=True)
            return self._backlog

    def degraded(self, tx: sql.Tx | None = None) -> bool:
        """Past the readiness bounds (`DEGRADED_AGE_S`, `DEGRADED_DEPTH`), or the relay is cut
        off from the broker (the backlog read in `tx` if given)."""
        if self.active and not self.connected:
            return True
        backlog = self.backlog(tx)
        return backlog.oldest_age_s > DEGRADED_AGE_S or backlog.depth > DEGRADED_DEPTH

    # the relay thread

    def _run(self) -> None:
        reader = outbox.RelayReader(self._engine)
        backoff = self._min_backoff_s
        try:
            while not self._stopping.is_set():
                try:
                    if not reader.claim():
                        self._set_active(False)
                        self._wake.wait(self._poll_s)
                        self._clear_wake()
                        continue
                    self._set_active(True)
                    self._relay_connected(reader)
                    backoff = self._min_backoff_s
                except reader.errors:
                    # The database is away: give up the connection (and the relay role) and
                    # try again; the rows stay where they are.
                    log.exception("MQTT relay: database error; retrying")
                    reader.close()
                    self._set_active(False)
                except OSError as error:  # the broker: refused, unreachable, or gone
                    log.warning("MQTT broker %s: %s; retrying", self.target.safe_url, error)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)
        finally:
            reader.close()
            self._set_active(False)

    def _set_active(self, active: bool) -> None:
        if active != self._active.is_set():
            (self._active.set if active else self._active.clear)()
            self._role.set(1 if active else 0)
            log.info("MQTT relay role %s", "taken" if active else "released")

    def _connect(self) -> Connection:
        tls = None
        if self.target.tls:
            tls = ssl.create_default_context(cafile=self.target.ca_file)
        return Connection.open(
            self.target.host,
            self.target.port,
            client_id=self._client_id,
            username=self.target.username,
            password=self.target.password,
            keepalive_s=KEEPALIVE_S,
            tls=tls,
        )

    def _relay_connected(self, reader: outbox.RelayReader) -> None:
        """Connect and relay until stopped; raises on a broker or database failure."""
        broker = self._connect()
        log.info("MQTT connected to %s", self.target.safe_url)
        self._connected.set()
        self._up.set(1)
        window = _Window(self._window)
        try:
            self._relay(reader, broker, window)
        finally:
            self._connected.clear()
            self._up.set(0)
            broker.close()
            # Acknowledged messages are deleted; the rest are read again and resent in order.
            try:
                reader.acknowledged(window.take_acked())
            finally:
                unacked = window.drop()
                reader.unsent(unacked)
                self._resent.inc(len(unacked))

    def _relay(self, reader: outbox.RelayReader, broker: Connection, window: _Window) -> None:
        first_ack = last_sent = last_ack = time.monotonic()
        while not self._stopping.is_set():
            sent = 0
            if window.room >= min(CHUNK, self._window):
                # Cleared before reading, so a commit after the read wakes the next turn.
                self._clear_wake()
                messages = reader.take(min(CHUNK, window.room))
                if messages:
                    broker.send(b"".join([self._packet(m, window) for m in messages]))
                    sent = len(messages)
                    last_sent = time.monotonic()
            if window.out:
                # More to read: just collect what has arrived; otherwise wait for PUBACKs.
                wait = 0.0 if sent == CHUNK and window.room else 0.05
                # New rows cut the wait short while there is room in the window for them.
                acks = broker.read_acks(wait, self._wake_r if window.room >= CHUNK else None)
                if acks:
                    window.ack(acks)
                    last_ack = time.monotonic()
                elif time.monotonic() - last_ack > ACK_TIMEOUT_S:
                    raise BrokerError("no PUBACK within the acknowledgement timeout")
            else:
                last_ack = time.monotonic()
            now = time.monotonic()
            if not window.acked:
                first_ack = now
            elif window.acked >= DELETE_EVERY or now - first_ack >= DELETE_AFTER_S:
                ids = window.take_acked()
                reader.acknowledged(ids)
                self._published.inc(len(ids))
                first_ack = now
            if not window.out and not sent:
                if now - last_sent >= KEEPALIVE_S / 2:
                    broker.ping()  # MQTT 3.1.1 §3.1.2.10: keep the idle connection alive
                    last_sent = now
                due = first_ack + DELETE_AFTER_S - now if window.acked else self._poll_s
                self._wake.wait(max(0.0, min(self._poll_s, due)))
                broker.read_acks(0.0)  # PINGRESP, or the broker closing the connection

    def _packet(self, message: outbox.Message, window: _Window) -> bytes:
        topic = self._topics.get(message.topic)
        if topic is None:
            if len(self._topics) >= 10_000:
                self._topics.clear()  # bounded: one entry per device topic
            topic = self._topics[message.topic] = encode_topic(message.topic)
        return publish_packet(
            topic, message.payload.encode(), message.retain, window.add(message.id)
        )


class _Window:
    """Messages on the wire: packet id -> outbox id, and those acknowledged since the last
    delete."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._out: dict[int, int] = {}
        self._acked: list[int] = []
        self._next = 0

    @property
    def room(self) -> int:
        return self._size - len(self._out)

    @property
    def out(self) -> int:
        return len(self._out)

    @property
    def acked(self) -> int:
        return len(self._acked)

    def add(self, outbox_id: int) -> int:
        """A packet id (1..65535, §2.3.1) not in use, for `outbox_id`."""
        packet_id = self._next
        while True:
            packet_id = packet_id % 65535 + 1
            if packet_id not in self._out:
                break
        self._next = packet_id
        self._out[packet_id] = outbox_id
        return packet_id

    def ack(self, packet_ids: list[int]) -> None:
        out = self._out
        for packet_id in packet_ids:
            outbox_id = out.pop(packet_id, None)
            if outbox_id is not None:  # a PUBACK for an unknown id is ignored (§4.3.2)
                self._acked.append(outbox_id)

    def take_acked(self) -> list[int]:
        acked, self._acked = self._acked, []
        return acked

    def drop(self) -> list[int]:
        """Forget what is on the wire (the connection is gone); its outbox ids."""
        ids = list(self._out.values())
        self._out.clear()
        return ids
