"""One board, start to finish: register → flash → install → verify, resumable step by step.

Identity is the board's MAC: a board already in the registry keeps its client and gets a fresh
secret (rotation, the old one keeps working for the server's grace period), so provisioning a board
twice never leaves an orphan. The fresh secret lives only in memory and in the 0600 `config.json`
staged for the copy; the state file records step names and the client id, never a secret.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import SecretStr

from provisioning.common.bundle import install_plan
from provisioning.common.errors import ParkctlError
from provisioning.parkctl.api.client import AdminClient, MacConflictError
from provisioning.parkctl.fleet import console, esp, files
from provisioning.parkctl.fleet.config import Network, board_config, staged_config
from provisioning.parkctl.fleet.image import FirmwareImage, check_compatible
from provisioning.parkctl.fleet.state import STEPS, FleetState
from provisioning.parkctl.idp.twosided import TwoSided

# (step, fraction done 0..1, short detail) for progress displays.
ReportFn = Callable[[str, float, str], None]


@dataclass(frozen=True)
class BoardJob:
    """What to provision on one port."""

    port: str
    lot: str
    name: str
    wifi_ssid: str | None = None  # overrides the network's SSID for this board


@dataclass
class BoardResult:
    """The outcome for one board; `failed_step` and `error` say what to fix when it failed."""

    port: str
    mac: str | None = None
    client_id: str | None = None
    done: list[str] = field(default_factory=list)  # steps finished by this run
    skipped: list[str] = field(default_factory=list)  # steps a previous run had finished
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step run now
    failed_step: str | None = None
    error: str | None = None
    reused: bool = False  # the MAC was registered already

    @property
    def ok(self) -> bool:
        return self.error is None


def firmware_digest(image: FirmwareImage) -> str:
    """Short SHA-256 of the firmware, recorded with the flash step to notice a new image."""
    return hashlib.sha256(image.data).hexdigest()[:16]


@dataclass
class Provisioner:
    """Provisions boards one at a time per call; safe to share between threads."""

    registry: AdminClient
    image: FirmwareImage
    network: Network
    state: FleetState | None = None
    baud: int | None = None
    erase: bool = False
    verify_timeout: float = 60.0
    external: TwoSided | None = None  # boards are clients of an external authorization server
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        self.digest = firmware_digest(self.image)

    def run(self, job: BoardJob, report: ReportFn | None = None) -> BoardResult:
        """Provision `job`'s board; never raises for a board failure (see `BoardResult`)."""
        result = BoardResult(port=job.port)
        say: ReportFn = report or (lambda _s, _f, _d: None)
        step = "connect"
        try:
            previous = self.state.record(job.port) if self.state else {}
            already = [s for s in previous.get("steps", []) if s in STEPS]
            flashed = (
                "flash" in already
                and previous.get("firmware") == self.digest
                and bool(previous.get("mac"))
                and self._same_board(job.port, str(previous.get("mac")))
            )
            if flashed and len(already) == len(STEPS):
                result.mac, result.client_id = previous["mac"], previous.get("client_id")
                result.skipped = list(STEPS)
                say("done", 1.0, "finished by an earlier run")
                return result
            secret: SecretStr | None = None
            if flashed:
                result.mac = str(previous["mac"])
                result.skipped.append("flash")
                if "install" in already:
                    result.client_id = previous.get("client_id")
                    result.skipped += ["register", "install"]
                else:
                    step = "register"
                    secret = self._register(job, result, say)
            else:
                say(step, 0.0, "")
                with esp.connect(job.port) as loader:
                    info = esp.chip_info(loader)
                    result.mac = info.mac
                    check_compatible(self.image, info.chip, info.flash_size)  # before registering
                    if self.state:
                        self.state.bind(job.port, info.mac)
                        self.state.forget(job.port, "flash", "install", "verify")
                    step = "register"
                    secret = self._register(job, result, say)
                    step = "flash"
                    self._flash(job, result, loader, say)
            if secret is not None:
                step = "install"
                self._install(job, result, secret, say)
            step = "verify"
            say(step, 0.0, "")
            start = time.monotonic()
            seen = console.watch(
                job.port,
                timeout=self.verify_timeout,
                on_line=lambda line: say("verify", 0.5 if "token" in line else 0.2, ""),
            )
            result.timings["verify"] = time.monotonic() - start
            self._finish(job, result, "verify", first_upload_s=round(seen.upload_s, 2))
            say("verify", 1.0, "")
        except ParkctlError as error:
            result.failed_step = step
            result.error = error.message
            if self.state:
                self.state.fail(job.port, step, error.message)
        return result

    @staticmethod
    def _same_board(port: str, mac: str) -> bool:
        """Whether the board on `port` is still the one recorded as flashed there (by MAC)."""
        try:
            with esp.connect(port) as loader:
                seen = esp.chip_info(loader).mac
                esp.start_app(loader, port)
        except ParkctlError:
            # Running MicroPython where esptool cannot reset it into the bootloader (a port
            # without reset lines and no auto-reset): trust the MAC recorded for this port.
            return True
        return seen == mac

    def _flash(self, job: BoardJob, result: BoardResult, loader: object, say: ReportFn) -> None:
        say("flash", 0.0, "")
        start = time.monotonic()
        esp.flash_firmware(
            loader,
            self.image,
            baud=self.baud,
            erase=self.erase,
            progress=lambda n, total: say("flash", n / max(total, 1), ""),
        )
        esp.start_app(loader, job.port)
        result.timings["flash"] = time.monotonic() - start
        self._finish(job, result, "flash", firmware=self.digest)

    def _install(
        self, job: BoardJob, result: BoardResult, secret: SecretStr, say: ReportFn
    ) -> None:
        say("install", 0.0, "")
        start = time.monotonic()
        network = self._network_for(job)
        issuer_keys = self.external.board_config() if self.external else None
        config = board_config(
            network, str(result.client_id), secret.get_secret_value(), job.lot, issuer_keys
        )
        plan = install_plan(network.release)
        if plan.release_key:
            config["release_key"] = plan.release_key
        with staged_config(config, network.ca_cert_pem) as stage:
            files.install(
                job.port,
                sorted(stage.iterdir()),
                plan,
                reset=False,
                progress=lambda n, total: say("install", n / max(total, 1), ""),
            )
        result.timings["install"] = time.monotonic() - start
        self._finish(job, result, "install")

    def _network_for(self, job: BoardJob) -> Network:
        if job.wifi_ssid is None:
            return self.network
        n = self.network
        return Network(
            n.token_url, n.ingest_url, job.wifi_ssid, n.wifi_password, n.ca_cert_pem,
            n.interval_s, n.sensor,
        )  # fmt: skip

    def _register(self, job: BoardJob, result: BoardResult, say: ReportFn) -> SecretStr:
        """Register the board bound to its MAC, or reuse its client with a fresh secret."""
        say("register", 0.0, "")
        start = time.monotonic()
        mac = str(result.mac)
        if self.external is not None:
            return self._register_external(job, result, mac, start)
        device = self.registry.find_by_mac(mac)
        if device is None:
            try:
                created = self.registry.register_device(job.lot, job.name, mac)
            except MacConflictError as conflict:  # registered meanwhile by another run
                device_id = conflict.client_id
            else:
                result.client_id = created.client_id
                self._finish(job, result, "register", mac=mac, client_id=created.client_id)
                result.timings["register"] = time.monotonic() - start
                return created.client_secret
        else:
            device_id = device.client_id
            if (device.lot, device.name) != (job.lot, job.name):
                self.registry.update_device(device_id, lot=job.lot, name=job.name)
        # Known board: the secret it had was never kept anywhere, so it gets a new one.
        result.client_id, result.reused = device_id, True
        secret = self.registry.rotate_secret(device_id).client_secret
        self._finish(job, result, "register", mac=mac, client_id=device_id)
        result.timings["register"] = time.monotonic() - start
        return secret

    def _register_external(
        self, job: BoardJob, result: BoardResult, mac: str, start: float
    ) -> SecretStr:
        """Register the board at the external server and in parkfleet (see `idp.twosided`);
        the state file remembers an external client made before parkfleet recorded it."""
        assert self.external is not None
        state = self.state
        earlier = state.record(job.port).get("external_client_id") if state else None

        def remember(client_id: str | None) -> None:
            if state:
                state.note(job.port, external_client_id=client_id)

        made = self.external.register(job.lot, job.name, mac, earlier, remember if state else None)
        result.client_id, result.reused = made.client_id, made.reused
        self._finish(job, result, "register", mac=mac, client_id=made.client_id)
        result.timings["register"] = time.monotonic() - start
        return made.secret

    def _finish(
        self, job: BoardJob, result: BoardResult, step: str, **facts: str | int | float | None
    ) -> None:
        result.done.append(step)
        if self.state:
            self.state.finish(job.port, step, **facts)
