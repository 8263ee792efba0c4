"""esptool driver: detect the chip, read the MAC and flash size, write and verify MicroPython.

Why esptool's Python API rather than `python -m esptool` in a subprocess: the fleet run flashes
several boards from threads and shows each one's progress, and the API gives us the progress per
block, the chip object (MAC, flash size) and typed errors (`FatalError`) without parsing text. The
API logs through one process-wide logger, so `_ThreadLogger` routes each thread's esptool output
and progress to the board that thread is working on.

Ports: a local path (`/dev/ttyUSB0`, a pty) has the DTR/RTS reset lines that put an ESP32 into its
bootloader; `socket://` and `rfc2217://` ports do not, so there esptool connects with `no-reset`
and the board is started afterwards with the ROM's "run user code" command instead of a reset.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial
from esptool import cmds
from esptool.logger import TemplateLogger, log
from esptool.util import FatalError, flash_size_bytes

from provisioning.common.errors import ParkctlError
from provisioning.common.rules import normalise_mac
from provisioning.parkctl.fleet.image import (
    ESP_IMAGE_MAGIC,
    FirmwareImage,
    check_compatible,
    flash_offset,
)

ROM_BAUD = 115200
# (bytes done, bytes total) while writing flash.
ProgressFn = Callable[[int, int], None]


def has_reset_lines(port: str) -> bool:
    """Whether esptool can reset the board into its bootloader through DTR/RTS on `port`.

    Network ports carry no modem lines, and neither does a pseudo-terminal (ioctl ENOTTY).
    """
    return not port.startswith(("socket://", "rfc2217://", "/dev/pts/"))


class _ThreadLogger(TemplateLogger):  # type: ignore[misc]  # esptool ships no type hints
    """esptool's logger, installed once: routes each thread's lines and progress to its board."""

    _local = threading.local()

    def _lines(self) -> deque[str] | None:
        return getattr(self._local, "lines", None)

    def _add(self, text: str) -> None:
        lines = self._lines()
        if lines is not None and text.strip():
            lines.append(text.strip())

    def print(self, *args: Any, **kwargs: Any) -> None:
        self._add(" ".join(str(a) for a in args))

    def note(self, message: str) -> None:
        self._add(f"Note: {message}")

    def warning(self, message: str) -> None:
        self._add(f"Warning: {message}")

    def error(self, message: str) -> None:
        self._add(f"Error: {message}")

    def stage(self, finish: bool = False) -> None:
        pass

    def progress_bar(
        self,
        cur_iter: int,
        total_iters: int,
        prefix: str = "",
        suffix: str = "",
        bar_length: int = 30,
    ) -> None:
        callback: ProgressFn | None = getattr(self._local, "progress", None)
        if callback is not None:
            callback(cur_iter, total_iters)

    def set_verbosity(self, verbosity: str) -> None:
        pass


_LOGGER = _ThreadLogger()
_install_lock = threading.Lock()
_installed = False


@contextmanager
def _esptool_output() -> Iterator[deque[str]]:
    """Collect this thread's esptool lines (kept for error messages)."""
    global _installed
    with _install_lock:
        if not _installed:  # once: afterwards `log` is our logger, which has no set_logger
            log.set_logger(_LOGGER)
            _installed = True
    local = _ThreadLogger._local
    local.lines, local.progress = deque(maxlen=20), None
    try:
        yield local.lines
    finally:
        local.lines = local.progress = None


@dataclass(frozen=True)
class ChipInfo:
    """What esptool tells about a board in its bootloader."""

    chip: str  # esptool's name: esp32, esp32s3, esp32c3...
    description: str  # e.g. "ESP32-D0WD-V3 (revision v3.1)"
    mac: str  # aa:bb:cc:dd:ee:ff
    flash_size: int | None  # bytes; None when the flash chip id is unknown


def _explain(port: str, error: Exception) -> ParkctlError:
    """One clear operator message for an esptool or serial failure."""
    text = str(error)
    if "could not open" in text.lower():
        return ParkctlError(
            f"{port}: cannot open the port (busy, or nothing there); is the board plugged in "
            "and the port name right?"
        )
    if isinstance(error, serial.SerialException | OSError) and not isinstance(error, FatalError):
        if not has_reset_lines(port) or "could not open" in text.lower():
            return ParkctlError(
                f"{port}: cannot open the port ({text.splitlines()[0]}); is the board plugged in "
                "and the port name right?"
            )
        return ParkctlError(f"{port}: the board went away ({text}); plug it back in and re-run")
    if "No serial data received" in text or "Failed to connect" in text:
        return ParkctlError(
            f"{port}: the board does not answer esptool (no SYNC reply); hold BOOT and press "
            "EN/RESET to enter the bootloader, then re-run"
        )
    if "Unexpected chip" in text or "autodetect" in text:
        return ParkctlError(f"{port}: not an ESP32-family chip ({text.splitlines()[0]})")
    if "MD5" in text or "Verification failed" in text or "digest" in text.lower():
        return ParkctlError(
            f"{port}: flash verification failed (MD5 of the flash differs from the firmware); "
            "re-run the flash, at a lower --baud if it happens again"
        )
    return ParkctlError(
        f"{port}: esptool: {text.splitlines()[0] if text else type(error).__name__}"
    )


def _check_port(port: str) -> None:
    if has_reset_lines(port) and "://" not in port and not Path(port).exists():
        raise ParkctlError(f"{port}: no such serial port; is the board plugged in?")


@contextmanager
def connect(port: str) -> Iterator[Any]:
    """Connect esptool to the ROM bootloader on `port`; yields the chip object (`ESPLoader`).

    The port is always closed on exit. Errors become one `ParkctlError` each.
    """
    _check_port(port)
    mode = "default-reset" if has_reset_lines(port) else "no-reset"
    with _esptool_output():
        try:
            esp = cmds.detect_chip(port, ROM_BAUD, connect_mode=mode, connect_attempts=3)
        except (FatalError, serial.SerialException, OSError) as error:
            raise _explain(port, error) from None
        try:
            yield esp
        except (FatalError, serial.SerialException, OSError) as error:
            raise _explain(port, error) from None
        finally:
            esp._port.close()


def chip_info(esp: Any) -> ChipInfo:
    """Chip, MAC and flash size of the connected board."""
    name = esp.CHIP_NAME.lower().replace("-", "")
    size = cmds.detect_flash_size(esp)
    raw = ":".join(f"{b:02x}" for b in esp.read_mac())
    try:
        mac = normalise_mac(raw)
    except ValueError:
        # A zero or group MAC means blank or damaged eFuses: such a board cannot be bound to an
        # identity (the registry keys boards by MAC), so nothing else is done with it.
        port = getattr(esp._port, "port", "the board")
        raise ParkctlError(
            f"{port}: the board reports MAC {raw}, which is no board's address (blank or "
            "damaged eFuses); it cannot be given an identity"
        ) from None
    return ChipInfo(
        chip=name,
        description=esp.get_chip_description(),
        mac=mac,
        flash_size=flash_size_bytes(size) if size else None,
    )


def has_firmware(esp: Any) -> bool:
    """Whether an ESP image header (magic 0xE9) sits at the chip's firmware offset."""
    offset = flash_offset(esp.CHIP_NAME.lower().replace("-", ""))
    return bool(esp.read_flash(offset, 16)[:1] == bytes([ESP_IMAGE_MAGIC]))


@dataclass(frozen=True)
class FlashResult:
    """What was written where, and that esptool's MD5 check of the flash matched."""

    offset: int
    size: int
    verified: bool


def flash_firmware(
    esp: Any,
    image: FirmwareImage,
    baud: int | None = None,
    erase: bool = False,
    progress: ProgressFn | None = None,
) -> FlashResult:
    """Write `image` at the chip's firmware offset and verify it (esptool's flash MD5 command).

    Uploads esptool's stub flasher first (faster, compressed writes; needed for `erase`), then
    checks chip and size before erasing anything. `progress` gets (bytes done, bytes total).
    """
    info = chip_info(esp)
    offset = check_compatible(image, info.chip, info.flash_size)
    esp = cmds.run_stub(esp)
    if baud and baud != ROM_BAUD:
        esp.change_baud(baud)
    cmds.attach_flash(esp)
    if erase:
        cmds.erase_flash(esp)
    _ThreadLogger._local.progress = progress
    try:
        cmds.write_flash(esp, [(offset, image.data)], compress=True)
    finally:
        _ThreadLogger._local.progress = None
    # write_flash checks the MD5 already; verify_flash states it explicitly and raises on mismatch.
    cmds.verify_flash(esp, [(offset, image.data)])
    return FlashResult(offset=offset, size=image.size, verified=True)


def start_app(esp: Any, port: str) -> None:
    """Leave the bootloader and run the firmware.

    With reset lines: esptool's hard reset (EN pulse). Without: the stub, if running, first hands
    back to the ROM loader (FLASH_END "reboot", esptool's stub `soft_reset(True)`), then the ROM's
    "run user code" (FLASH_BEGIN 0/0 + FLASH_END, esptool's `run` command) boots from flash.
    """
    if has_reset_lines(port):
        cmds.reset_chip(esp, "hard-reset")
        return
    if esp.IS_STUB:
        esp.soft_reset(True)
    esp.run()
