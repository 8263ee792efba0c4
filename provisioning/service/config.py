"""Service configuration: flags > PARK_* environment variables > defaults (pydantic-settings).

Settings are built by the CLI at start-up (never at import time) and handed to `create_app`.
Nothing secret has a default: the secret-hash key and signing keys are generated into the data
directory on first start, with owner-only permissions.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from provisioning.common.errors import ParkctlError
from provisioning.store.db import normalise_url


def default_data_dir() -> Path:
    """XDG data directory for the service's database, keys and hash key."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "parkfleet"


class Settings(BaseSettings):
    """Everything `parkctl serve` can be told, each also readable from `PARK_<NAME>`."""

    # hide_input_in_errors: a refused value (a broker URL with its password) is never echoed.
    model_config = SettingsConfigDict(env_prefix="PARK_", extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    db: str | None = None  # SQLAlchemy URL; default: SQLite file in data_dir
    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    issuer: str | None = None  # default: the URL the service serves on
    token_ttl: int = Field(default=86400, ge=5, le=31 * 86400)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Old secret keeps working this long after rotate-secret (re-provision without downtime).
    secret_grace_s: int = Field(default=86400, ge=0)
    # Per-client token bucket on /oauth/token: spent by tokens issued, never by failures.
    token_rate_burst: int = Field(default=10, ge=1)
    token_rate_per_hour: float = Field(default=10.0, gt=0)
    # Failed client authentications (token and introspection endpoints), limited apart from
    # issuance: per source address (refused before any work once spent) and per client ID
    # (only wrong secrets are refused, the owner's right one is still served).
    # Readings per device (a post without readings counts as one): each board's bucket holds
    # `ingest_readings_burst` and refills `ingest_readings_per_minute`; beyond, 429 with
    # Retry-After (the agent keeps its readings and backs off). A board posts one reading per
    # interval (>= 1 s; 10 s by default), and a spool flushed after an outage drains at this
    # rate: one day of 10 s readings in about 15 minutes. A post costs at most the burst.
    # Per instance.
    ingest_readings_per_minute: float = Field(default=600.0, gt=0)
    ingest_readings_burst: int = Field(default=3000, ge=1)
    auth_fail_source_burst: int = Field(default=20, ge=1)
    auth_fail_source_per_hour: float = Field(default=60.0, gt=0)
    auth_fail_client_burst: int = Field(default=10, ge=1)
    auth_fail_client_per_hour: float = Field(default=10.0, gt=0)
    # Failed authentications are audited as one row per client per window, with a count.
    auth_fail_audit_window_s: float = Field(default=60.0, gt=0, le=3600)
    # Slow clients: time to send a request's head, and its body once the head is in.
    header_timeout_s: float = Field(default=10.0, gt=0, le=300)
    body_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Open connections per source address, and in all (beyond: refused at once).
    max_connections_per_source: int = Field(default=128, ge=1)
    max_connections: int = Field(default=4096, ge=1)
    # SQLite: FULL makes an acknowledged reading survive a power cut (NORMAL: a process crash).
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    # GET /metrics without a token (for a Prometheus on a private network); else operator token.
    metrics_public: bool = False
    # /docs and /openapi.json (off: the API's map is not handed to every caller).
    api_docs: bool = False
    # A rotated-in signing key is published this long before it signs (>= JWKS max-age, 300 s).
    key_publish_delay_s: float = Field(default=600.0, ge=0)
    # How long a verifier may trust a device's enabled/deleted state (the bound: docs/service.md).
    device_status_ttl_s: float = Field(default=30.0, ge=0, le=60)
    mqtt_url: str | None = None
    # Run the ingestion API against a remote authorization server instead of in-process keys.
    jwks_url: str | None = None
    log_level: str = "info"
    # Worker processes on one port (PostgreSQL only: SQLite is single-process).
    workers: int = Field(default=1, ge=1, le=64)
    # Release public keys (PEM files, comma-separated) that published agent releases must be
    # signed by; none: publishing is refused.
    release_keys: str | None = None
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (comma-separated addresses
    # or networks); none: the peer's address is the client's, whatever a header says.
    trusted_proxies: str | None = None
    # External authorization servers (issuer URLs, comma-separated, each exactly as its tokens'
    # `iss` says it) whose access tokens for `ingest_audience` the ingestion API accepts from
    # devices registered for them (auth/issuers.py).
    trust_issuers: str | None = None
    ingest_audience: str = Field(default="parkfleet-ingest", min_length=1, max_length=256)
    # PEM CA bundle for https issuers (a private CA); none: the system store.
    trust_ca_cert: Path | None = None

    @field_validator("trust_issuers")
    @classmethod
    def _check_trust_issuers(cls, value: str | None) -> str | None:
        # At start: a plain-http issuer elsewhere than loopback would let anyone on the path
        # hand us signing keys, so `parkctl serve` refuses it with one line.
        for url in split_list(value):
            check_issuer_url(url)
        return value

    @field_validator("trust_ca_cert")
    @classmethod
    def _check_trust_ca_cert(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such CA file {value}")
        return value

    @property
    def trusted_issuers(self) -> tuple[str, ...]:
        return tuple(split_list(self.trust_issuers))

    @field_validator("db")
    @classmethod
    def _normalise_db(cls, value: str | None) -> str | None:
        return normalise_url(value) if value else value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str | None) -> str | None:
        # At start, not when the publisher is built: a bad URL stops `parkctl serve` with one
        # line naming the problem (never the password).
        if value:
            from provisioning.service.ingest.mqtt import (
                parse_mqtt_url,  # paho only when MQTT is used
            )

            parse_mqtt_url(value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str | None) -> str | None:
        # Checked at start: a typo would otherwise trust nobody (or a name nobody connects as).
        if value is None:
            return None
        items = [item.strip() for item in value.split(",") if item.strip()]
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return ",".join(items) or None

    @property
    def trusted_proxy_list(self) -> list[str]:
        """The proxies whose forwarded headers are believed (empty: none)."""
        return self.trusted_proxies.split(",") if self.trusted_proxies else []

    @property
    def public_https(self) -> bool:
        """The service's public URL is HTTPS: served with TLS here, or `--issuer` (the URL
        clients use, e.g. the TLS-terminating proxy's) is https. Cookies are then Secure."""
        return self.scheme == "https" or self.issuer_url.startswith("https://")

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir / 'parkfleet.db'}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert and self.tls_key else "http"

    @property
    def issuer_url(self) -> str:
        if self.issuer:
            return self.issuer.rstrip("/")
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0", "::") else self.host  # noqa: S104
        return f"{self.scheme}://{host}:{self.port}"


def split_list(value: str | None) -> list[str]:
    """The items of a comma-separated setting, blanks dropped."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def check_issuer_url(url: str) -> None:
    """An issuer we may fetch keys from: https, or http on a loopback host only; no query or
    fragment (RFC 8414 §2). Raises ValueError saying why."""
    parts = urlsplit(url)
    if "@" in parts.netloc:  # never echoed: it may be a password
        raise ValueError("an issuer URL carries no user name or password")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"issuer {url!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"issuer {url!r} has a query or fragment (RFC 8414 §2)")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError(f"issuer {url!r}: plain http is allowed only on loopback; use https")


def is_loopback(host: str) -> bool:
    """`localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def from_flags(given: Mapping[str, Any]) -> Settings:
    """Settings from the `parkctl` flags actually given (None: not given): flags beat PARK_*
    variables, which beat defaults. A refused value is one `ParkctlError` line naming it."""
    try:
        return Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as error:
        raise ParkctlError(describe_invalid(error)) from None


# Settings whose `parkctl serve` flag is not the field's name.
_FLAGS = {
    "mqtt_url": "--mqtt",
    "db": "--db",
    "trust_issuers": "--trust-issuer",
    "trusted_proxies": "--trusted-proxy",
}


def describe_invalid(error: ValidationError) -> str:
    """One line naming each refused setting by its flag and variable, and why (never the value:
    `hide_input_in_errors`)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        name = str(item["loc"][0]) if item["loc"] else "settings"
        flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
        reason = item["msg"].removeprefix("Value error, ")
        problems.append(f"{flag} / PARK_{name.upper()}: {reason}")
    return "; ".join(problems)
