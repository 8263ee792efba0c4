"""Fixtures for the fleet tool: the real service, an operator made by `parkctl admin create`,
a MicroPython firmware image and simulated boards (tools.simboard) on socket:// ports."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioning.common.admin_schemas import Device
from provisioning.parkctl.api.client import AdminClient
from provisioning.parkctl.api.tokens import TokenCache
from tools.harness.parkctl import parkctl
from tools.harness.server import ServiceProcess

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Operator:
    """The service and an operator's credentials, as the environment `parkctl` reads."""

    service: ServiceProcess
    client_id: str
    client_secret: str
    cache_dir: Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PARK_SERVER": self.service.url,
            "PARK_CLIENT_ID": self.client_id,
            "PARK_CLIENT_SECRET": self.client_secret,
            "PARK_CACHE_DIR": str(self.cache_dir),
            "COLUMNS": "200",  # wide Rich tables: whole messages on one line
        }

    def admin(self) -> AdminClient:
        return AdminClient(
            self.service.url, self.client_id, self.client_secret, cache=TokenCache(self.cache_dir)
        )

    def devices(self) -> list[Device]:
        with self.admin() as admin:
            return list(admin.iter_devices())

    def wait_for_reading(self, client_id: str, timeout: float = 30.0) -> Device:
        """The device once the service has stored a reading from it."""
        deadline = time.monotonic() + timeout
        with self.admin() as admin:
            while True:
                device = admin.get_device(client_id)
                if device.reading is not None:
                    return device
                if time.monotonic() > deadline:
                    raise AssertionError(f"no reading from {client_id} in {timeout}s")
                time.sleep(0.3)


@pytest.fixture
def operator(tmp_path: Path) -> Iterator[Operator]:
    with operator_service(tmp_path) as made:
        yield made


@contextmanager
def operator_service(
    tmp_path: Path, extra_args: list[str] | None = None, env: dict[str, str] | None = None
) -> Iterator[Operator]:
    """The service (with `extra_args` and `env`) and an operator made by `parkctl admin create`."""
    data = tmp_path / "data"
    with ServiceProcess(data, extra_args=extra_args, env=env) as service:
        made = parkctl(
            "admin",
            "create",
            "--db",
            f"sqlite:///{data / 'parkfleet.db'}",
            "--data-dir",
            str(data),
            "--name",
            "fleet-test",
            "--json",
        )
        assert made.returncode == 0, made.stderr
        creds = json.loads(made.stdout)
        yield Operator(service, creds["client_id"], creds["client_secret"], tmp_path / "cache")


@pytest.fixture
def firmware(tmp_path: Path) -> Path:
    from tools.simboard import make_firmware_image

    path = tmp_path / "ESP32_GENERIC-v1.24.1.bin"
    make_firmware_image(path, chip="esp32", size=96 * 1024)
    return path
