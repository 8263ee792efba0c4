"""What the service's components share: settings, the database and start/stop hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from provisioning.service.config import Settings

if TYPE_CHECKING:
    from provisioning.service.auth.keys import KeyStore
    from provisioning.service.auth.listen import ChangeListener
    from provisioning.service.auth.secrets import SecretHasher
    from provisioning.service.auth.verify import TokenVerifier
    from provisioning.service.ingest.live import LiveFeed
    from provisioning.service.ingest.mqtt import OutboxPublisher
    from provisioning.service.metrics import Metrics


@dataclass
class ServiceContext:
    """Built once per app by `create_app`; each component adds a typed field for its state."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    hasher: SecretHasher  # client secrets (key file in data_dir)
    metrics: Metrics  # the app's Prometheus registry: add collectors to metrics.registry
    keys: KeyStore  # JWT signing keys
    verifier: TokenVerifier  # the one bearer-token checker (auth.deps.require_token)
    mqtt: OutboxPublisher | None = None  # MQTT fan-out, when --mqtt / PARK_MQTT_URL is set
    live: LiveFeed | None = None  # Server-Sent Events to open dashboards (ui/)
    listener: ChangeListener | None = None  # PostgreSQL: other instances' changes (LISTEN)
    on_startup: list[Callable[[], None]] = field(default_factory=list)
    on_shutdown: list[Callable[[], None]] = field(default_factory=list)
