"""Watch a board's serial console after a reset: the agent's first token and first upload.

The port stays open from before the reset to the last line read, so nothing the board prints at
boot is missed. Where the port has DTR/RTS, the reset is the EN pulse esptool uses; on `socket://`
and `rfc2217://` ports it is `machine.reset()` sent through the raw REPL (what `mpremote reset`
does), interrupting the running program first with Ctrl-C.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import serial

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.fleet.esp import has_reset_lines

# The agent prints one line per event, prefixed "parkfleet:" (device/agent.py `log`); these match
# the first token and the first acknowledged upload.
TOKEN_LINE = re.compile(r"parkfleet: token fetched")
UPLOAD_LINE = re.compile(r"parkfleet: sent [0-9]+ up to seq")
# Lines after which waiting longer is pointless: say why at once.
FATAL_LINES = (
    (re.compile(r"token refused: 40[013]"), "the token endpoint refused the board's credentials"),
    (re.compile(r"parkfleet: config error"), "the agent refused config.json"),
    (re.compile(r"parkfleet: safe mode"), "the board started in safe mode"),
    (re.compile(r"parkfleet: crashed"), "the agent crashed"),
)
CONSOLE_BAUD = 115200

# Called with each console line (already free of secrets: the agent never prints them).
LineFn = Callable[[str], None]


@dataclass
class Verified:
    """When the first token and the first acknowledged upload were seen, in s after the reset."""

    token_s: float | None  # None: the agent reused a token cached in its flash
    upload_s: float
    lines: list[str] = field(default_factory=list)


def _reset(port: serial.SerialBase, url: str) -> None:
    if has_reset_lines(url):
        # EN low then high with IO0 (DTR) released: a normal boot, as esptool's HardReset.
        port.dtr = False
        port.rts = True
        time.sleep(0.1)
        port.rts = False
        return
    port.write(b"\r\x03\x03")  # stop the running program
    time.sleep(0.2)
    port.write(b"\x01")  # raw REPL (MicroPython docs, "raw mode and raw-paste mode")
    _read_until(port, b"raw REPL; CTRL-B to exit\r\n>", 5.0)
    port.write(b"import machine\nmachine.reset()\n\x04")


def _read_until(port: serial.SerialBase, marker: bytes, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while marker not in data:
        if time.monotonic() > deadline:
            raise ParkctlError(
                f"{port.port}: no raw REPL prompt on the console; is it MicroPython?"
            )
        data += port.read(max(1, port.in_waiting))
    return data


def watch(
    url: str,
    timeout: float = 60.0,
    reset: bool = True,
    on_line: LineFn | None = None,
) -> Verified:
    """Reset the board (optional) and wait for the agent's first token and first upload lines."""
    try:
        port = serial.serial_for_url(url, baudrate=CONSOLE_BAUD, timeout=0.2)
    except (serial.SerialException, OSError) as error:
        raise ParkctlError(f"{url}: cannot open the console ({error})") from None
    lines: list[str] = []
    token_s: float | None = None
    buffer = b""
    try:
        if reset:
            _reset(port, url)
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            chunk = port.read(max(1, port.in_waiting))
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                lines.append(line)
                if on_line:
                    on_line(line)
                for pattern, why in FATAL_LINES:
                    if pattern.search(line):
                        raise ParkctlError(f"{url}: {why}: {line[:160]}")
                if token_s is None and TOKEN_LINE.search(line):
                    token_s = time.monotonic() - start
                if UPLOAD_LINE.search(line):
                    return Verified(token_s, time.monotonic() - start, lines)
    except (serial.SerialException, OSError) as error:
        raise ParkctlError(f"{url}: the console went away ({error}); re-run to verify") from None
    finally:
        port.close()
    seen = "a token but no upload" if token_s is not None else "no token"
    last = f" (last line: {lines[-1][:120]})" if lines else " (the board printed nothing)"
    raise ParkctlError(
        f"{url}: the agent showed {seen} within {timeout:.0f} s{last}; check WiFi and the "
        "service URLs, then re-run"
    )
