"""Mosquitto started from the shipped `broker-config/` on a free port, and dashboard clients.

The configuration is the real `broker-config/mosquitto.conf`, with only the port, the password
file and the persistence directory moved into a temporary directory; accounts come from the real
`broker-config/create-accounts`. A test therefore pins the configuration a user runs.
"""

from __future__ import annotations

import getpass
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tools.harness.net import free_port
from tools.harness.process import ChildProcess
from tools.harness.services import REPO, mosquitto_binary

BROKER_CONFIG = REPO / "broker-config"
SERVICE_USER = "parkfleet-service"


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class MosquittoBroker(ChildProcess):
    """`mosquitto -c <templated copy>`; `stop()` and `start()` again keep port and persistence
    (on SIGTERM mosquitto saves its persistence file: retained messages, sessions)."""

    def __init__(
        self,
        workdir: Path,
        dashboards: tuple[str, ...] = ("dashboard",),
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        """`tls`: (certificate, key) in PEM to switch on the config's TLS listener too."""
        self.binary = mosquitto_binary()
        self.workdir = workdir
        self.port = free_port()
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.passwords: dict[str, str] = {}
        self.service_url = ""
        self.log_path = workdir / "mosquitto.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self._create_accounts(dashboards)
        self.config = self._write_config()

    def _create_accounts(self, dashboards: tuple[str, ...]) -> None:
        out = subprocess.run(
            [
                str(BROKER_CONFIG / "create-accounts"),
                "-f",
                str(self.workdir / "passwd"),
                "-p",
                str(self.port),
                *dashboards,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for line in out.splitlines():
            if line.startswith("PARK_MQTT_URL="):
                self.service_url = line.removeprefix("PARK_MQTT_URL=")
                self.passwords[SERVICE_USER] = self.service_url.split(":")[2].split("@")[0]
            elif line.startswith("dashboard "):
                _word, name, password = line.split()
                self.passwords[name] = password

    def _write_config(self) -> Path:
        text = (BROKER_CONFIG / "mosquitto.conf").read_text()
        moves = {
            "listener 1883 127.0.0.1": f"listener {self.port} 127.0.0.1",
            "password_file broker-config/passwd": f"password_file {self.workdir / 'passwd'}",
            "acl_file broker-config/acl": f"acl_file {BROKER_CONFIG / 'acl'}",
            "persistence_location broker-config/data/": (
                f"persistence_location {self.workdir / 'data'}/"
            ),
        }
        if self.tls:
            moves |= {
                "#listener 8883": f"listener {self.tls_port} 127.0.0.1",
                "#certfile broker-config/tls/server.crt": f"certfile {self.tls[0]}",
                "#keyfile broker-config/tls/server.key": f"keyfile {self.tls[1]}",
                "#tls_version tlsv1.2": "tls_version tlsv1.2",
            }
        for line, replacement in moves.items():
            assert f"\n{line}\n" in text, f"broker-config/mosquitto.conf lost {line!r}"
            text = text.replace(f"\n{line}\n", f"\n{replacement}\n")
        (self.workdir / "data").mkdir(exist_ok=True)
        # Under root mosquitto would drop to the `mosquitto` user, which cannot read tmp files.
        text += f"\nuser {getpass.getuser()}\n"
        path = self.workdir / "mosquitto.conf"
        path.write_text(text)
        return path

    def start(self) -> MosquittoBroker:
        ports = [self.port, *([self.tls_port] if self.tls_port else [])]
        self._spawn("mosquitto", [self.binary, "-c", str(self.config)], ports, cwd=REPO)
        return self

    def url(self, user: str = SERVICE_USER) -> str:
        return f"mqtt://{user}:{self.passwords[user]}@127.0.0.1:{self.port}"


class Subscriber:
    """A dashboard: subscribes to `topic` at QoS 1 and collects what arrives.

    With `persistent`, the broker keeps its session (and queues QoS 1 messages) while it is
    away, as a real dashboard that must not miss counts would connect.
    """

    def __init__(
        self,
        broker: MosquittoBroker,
        user: str | None = "dashboard",
        password: str | None = None,
        topic: str = "parking/#",
        persistent: bool = False,
    ) -> None:
        self.topic = topic
        self.messages: list[Received] = []
        self.connects: list[object] = []
        self.subscribed = 0  # SUBACKs received (one per successful connection)
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{user}-{free_port()}" if not persistent else f"test-{user}",
            clean_session=not persistent,
        )
        if user is not None:  # None: an anonymous client
            secret = broker.passwords.get(user, "") if password is None else password
            self.client.username_pw_set(user, secret)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect_async("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: object, _p: object
    ) -> None:
        with self._cond:
            self.connects.append(reason)
            self._cond.notify_all()
        if not getattr(reason, "is_failure", True):
            client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *_args: object) -> None:
        with self._cond:
            self.subscribed += 1
            self._cond.notify_all()

    def wait_subscribed(self, count: int = 1, timeout: float = 15) -> None:
        """Block until the `count`th subscription is in place (after `count` connections)."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.subscribed >= count, timeout), "no SUBACK"

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(
                Received(message.topic, bytes(message.payload), bool(message.retain))
            )
            self._cond.notify_all()

    def wait_connected(self, timeout: float = 10) -> object:
        """The CONNACK reason of the first connection attempt."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.connects, timeout), "no CONNACK"
            return self.connects[0]

    def wait_for(self, count: int, timeout: float = 15, topic_prefix: str = "") -> list[Received]:
        """Block until `count` messages under `topic_prefix` arrived; return them in order."""

        def matching() -> list[Received]:
            return [m for m in self.messages if m.topic.startswith(topic_prefix)]

        with self._cond:
            self._cond.wait_for(lambda: len(matching()) >= count, timeout)
            return matching()

    def wait_until(
        self, done: Callable[[list[Received]], bool], timeout: float = 15
    ) -> list[Received]:
        """Block until `done(messages so far)`; return the messages (asserting it came true)."""
        with self._cond:
            assert self._cond.wait_for(lambda: done(self.messages), timeout), self.messages[-5:]
            return list(self.messages)

    def settle(self, seconds: float = 0.3) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
