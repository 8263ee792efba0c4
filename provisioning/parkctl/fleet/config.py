"""A board's `config.json` (the device config contract of the agent) and its CA certificate.

The file holds the board's client secret, so it only ever exists on the host as a 0600 file in a
private temporary directory that is deleted as soon as it has been copied to the board.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioning.common.errors import ParkctlError
from provisioning.common.scopes import INGEST_AUDIENCE

CONFIG_NAME = "config.json"
CA_CERT_NAME = "ca.der"
DEFAULT_INTERVAL_S = 60


# The sensor a real board has: the agent's one hardware driver is the gate (device/gate.py: two
# light barriers), wired as device/README shows. The file sensor (`{"kind": "file", ...}`) only
# reads a file that tests and the demo write onto a board's flash: asked for by name, never a
# default, since a real board given it never counts.
GATE_SENSOR: dict[str, Any] = {"kind": "gate", "pin_a": 12, "pin_b": 13}
# What `--sensor` defaults to, as the command line shows it.
DEFAULT_SENSOR = json.dumps(GATE_SENSOR)


@dataclass(frozen=True)
class ProvisionOptions:
    """What `provision` and `fleet provision` share, as given on the command line (checked by
    the verb): where the boards will connect, what they run, how they are flashed and verified.
    Each field is named as its option's `dest` (`parkctl.verbs.options_object`)."""

    server: str | None
    token_url: str | None
    ingest_url: str | None
    wifi_ssid: str
    wifi_password_file: Path | None
    ca_cert: Path | None
    interval: int
    sensor: str
    release: Path | None
    idp_url: str | None  # register the boards at this external authorization server
    baud: int | None
    erase: bool
    verify_timeout: float


@dataclass(frozen=True)
class Network:
    """Where a board connects: WiFi and the service's URLs (shared by every board of a run)."""

    token_url: str
    ingest_url: str
    wifi_ssid: str = ""
    wifi_password: str = field(default="", repr=False)
    ca_cert_pem: bytes | None = field(default=None, repr=False)
    interval_s: int = DEFAULT_INTERVAL_S
    sensor: dict[str, Any] = field(default_factory=lambda: dict(GATE_SENSOR))
    release: Path | None = None  # a built release bundle; None: the agent built on the fly


def board_config(
    network: Network,
    device_id: str,
    client_secret: str,
    lot: str,
    issuer_keys: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The agent's `config.json` for one board (keys as the device config contract names them).
    `issuer_keys` point it at an external authorization server: its `token_url`, `audience` and
    token-request dialect (`token_body`, `token_audience_param`, `token_scope`)."""
    config: dict[str, Any] = {
        "device_id": device_id,
        "client_secret": client_secret,
        "token_url": network.token_url,
        "audience": INGEST_AUDIENCE,
        "ingest_url": network.ingest_url,
        "lot": lot,
        "interval_s": network.interval_s,
        "sensor": network.sensor,
        "wifi": {"ssid": network.wifi_ssid, "password": network.wifi_password},
    }
    config.update(issuer_keys or {})
    if network.ca_cert_pem is not None:
        config["ca_cert"] = CA_CERT_NAME
    return config


def pem_to_der(pem: bytes) -> bytes:
    """Convert a PEM CA certificate to DER, the only form MicroPython's `ssl` accepts."""
    # Imported here: `parkctl provision --help` reads this module's defaults (start-up time).
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    except ValueError as error:
        raise ParkctlError(f"--ca-cert is not a PEM certificate: {error}") from None


def read_ca_cert(path: Path) -> bytes:
    """Read and check a PEM CA certificate file (returns the PEM bytes)."""
    try:
        pem = path.read_bytes()
    except OSError as error:
        raise ParkctlError(f"cannot read CA certificate {path}: {error.strerror}") from None
    pem_to_der(pem)  # fail early, before any board is touched
    return pem


def read_secret_file(path: Path, what: str) -> str:
    """First line of a file holding a secret (e.g. the WiFi password); never echoed."""
    try:
        return path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
    except OSError as error:
        raise ParkctlError(f"cannot read {what} file {path}: {error.strerror}") from None


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


@contextmanager
def staged_config(config: dict[str, Any], ca_cert_pem: bytes | None) -> Iterator[Path]:
    """Write `config.json` (0600) and the DER CA into a private temp dir; delete it afterwards."""
    stage = Path(tempfile.mkdtemp(prefix="parkctl-config-"))  # mkdtemp makes it 0700
    try:
        _write_private(stage / CONFIG_NAME, json.dumps(config, separators=(",", ":")).encode())
        if ca_cert_pem is not None:
            _write_private(stage / CA_CERT_NAME, pem_to_der(ca_cert_pem))
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)
