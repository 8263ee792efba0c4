"""MQTT fan-out: a background thread that drains the outbox to the broker (paho-mqtt 2.x).

Resilience as structure: paho's network thread owns the connection and reconnects with
exponential backoff; the drain thread owns delivery. It reads the outbox in id order, publishes a
round of messages at QoS 1, waits for every PUBACK (MQTT 3.1.1 §4.3.2) and only then deletes the
round. If the broker goes away mid-round, paho keeps the unacknowledged messages and resends them
in order after reconnecting; if the service stops, the rows stay and are sent after the next
start. Delivery is therefore at least once, in order per device, and nothing is lost while the
database survives. Requests call `wake()` after committing, so a reading reaches subscribers
within milliseconds instead of a polling interval.
"""

from __future__ import annotations

import logging
import secrets
import ssl
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from provisioning.ingest import outbox

log = logging.getLogger(__name__)

ROUND_SIZE = 500
# No paho in-flight window: a round (ROUND_SIZE) already bounds what is unacknowledged, and with
# a window paho rescans its whole queue on every PUBACK (quadratic in the round size).
INFLIGHT = 0
KEEPALIVE_S = 30


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
    """Publishes the outbox to one broker; `start()`/`stop()` from the app's lifespan."""

    def __init__(
        self,
        engine: Engine,
        target: MqttTarget,
        *,
        round_size: int = ROUND_SIZE,
        poll_s: float = 1.0,
        min_backoff_s: float = 0.25,
        max_backoff_s: float = 10.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.target = target
        self._engine = engine
        self._round_size = round_size
        self._poll_s = poll_s  # also picks up rows committed by other processes
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._acked = threading.Condition()
        self._acked_mids: set[int] = set()  # PUBACKs of the current round
        self._expected = 0  # messages in the current round
        self._thread: threading.Thread | None = None
        self._published = Counter(
            "parkfleet_mqtt_published",
            "Outbox messages the broker acknowledged (PUBACK) and that were then deleted.",
            registry=registry,
        )
        self._up = Gauge(
            "parkfleet_mqtt_connected", "1 while connected to the MQTT broker.", registry=registry
        )
        self.client = self._make_client(min_backoff_s, max_backoff_s)

    def _make_client(self, min_backoff_s: float, max_backoff_s: float) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"parkfleet-ingest-{secrets.token_hex(4)}",
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=True,  # the outbox, not a broker session, is what survives restarts
        )
        if self.target.username is not None:
            client.username_pw_set(self.target.username, self.target.password)
        if self.target.tls:
            client.tls_set(ca_certs=self.target.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        client.max_inflight_messages_set(INFLIGHT)
        # paho sleeps fractional delays fine; its annotations just say int.
        client.reconnect_delay_set(min_delay=min_backoff_s, max_delay=max_backoff_s)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start draining."""
        log.info("MQTT fan-out to %s", self.target.safe_url)
        self.client.connect_async(self.target.host, self.target.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._run, name="mqtt-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop draining and disconnect; unacknowledged rows stay for the next start."""
        self._stopping.set()
        self._wake.set()
        with self._acked:
            self._acked.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def wake(self) -> None:
        """New rows were committed: drain now."""
        self._wake.set()

    # paho callbacks (paho's network thread)

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        if reason.is_failure:
            # Bad credentials or ACL setup: paho retries with backoff; say why once per try.
            log.warning("MQTT broker %s refused the connection: %s", self.target.safe_url, reason)
            return
        log.info("MQTT connected to %s", self.target.safe_url)
        self._up.set(1)
        self._connected.set()
        self._wake.set()

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        # Unreachable, refused TCP, or a TLS certificate that does not verify.
        log.warning("MQTT broker %s unreachable; retrying", self.target.safe_url)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: object,
        reason: ReasonCode,
        _properties: object,
    ) -> None:
        self._connected.clear()
        self._up.set(0)
        if not self._stopping.is_set():
            log.warning("MQTT connection to %s lost (%s); retrying", self.target.safe_url, reason)

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        _reason: ReasonCode,
        _properties: object,
    ) -> None:
        with self._acked:
            self._acked_mids.add(mid)
            # Wake the drain thread once per round, not once per PUBACK.
            if len(self._acked_mids) >= self._expected:
                self._acked.notify_all()

    # the drain thread

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._poll_s)
            self._wake.clear()
            try:
                while self._connected.is_set() and self._drain_round():
                    pass
            except (SQLAlchemyError, OSError, ValueError):
                # The database is away (or a row is unpublishable): the rows stay where they
                # are; say so and try again after the next wake or poll.
                log.exception("MQTT outbox: drain failed, retrying")

    def _drain_round(self) -> bool:
        """Publish the oldest round and delete it once acknowledged; False when done."""
        with self._engine.connect() as conn:
            messages = outbox.fetch(conn, self._round_size)
        if not messages or self._stopping.is_set():
            return False
        with self._acked:
            self._acked_mids.clear()  # every earlier round was fully acknowledged
            self._expected = len(messages)
        # Not under our lock: paho calls on_publish holding its own queue lock, which publish()
        # takes too.
        waiting = {
            self.client.publish(m.topic, m.payload, qos=outbox.QOS, retain=m.retain).mid
            for m in messages
        }
        with self._acked:
            while not waiting <= self._acked_mids:
                if self._stopping.is_set():
                    return False
                self._acked.wait(self._poll_s)
        with self._engine.begin() as conn:
            outbox.remove(conn, [m.id for m in messages])
        self._published.inc(len(messages))
        return True
