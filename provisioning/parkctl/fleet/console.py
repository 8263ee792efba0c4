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
    # A sensor that gives no reading never counts: waiting out the timeout only hides why.
    (
        re.compile(r"parkfleet: sensor: no reading"),
        "the sensor gives no reading, so the board has nothing to upload: --sensor does not "
        "match this board (a file sensor reads a file that is not on its flash; a gate board "
        'takes --sensor \'{"kind": "gate", "pin_a": A, "pin_b": B}\' with its '
        "beams' pins)",
    ),
)
# What a board's last lines mean when no upload came (the agent's own words: device/backoff.py
# and device/net.py), most specific first.
MEANINGS = (
    (re.compile(r"token request failed"), "the board cannot reach the token URL: is it an "
     "address the board's network reaches (not localhost on a real board), with the right "
     "scheme (http:// for a server without TLS) and port?"),
    (re.compile(r"upload failed"), "the board got a token but cannot reach the ingest URL: "
     "is it an address the board's network reaches, with the right scheme and port?"),
    (re.compile(r"upload refused: (\d+)"), "the ingestion API refused the board's posts"),
    (re.compile(r"wifi lost"), "the board has no WiFi: check --wifi-ssid and the "
     "password file"),
)  # fmt: skip
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
                        raise ParkctlError(f'{url}: the board said "{line[:160]}": {why}')
                if token_s is None and TOKEN_LINE.search(line):
                    token_s = time.monotonic() - start
                if UPLOAD_LINE.search(line):
                    return Verified(token_s, time.monotonic() - start, lines)
    except (serial.SerialException, OSError) as error:
        raise ParkctlError(f"{url}: the console went away ({error}); re-run to verify") from None
    finally:
        port.close()
    seen = "a token but no upload" if token_s is not None else "no token"
    raise ParkctlError(f"{url}: no upload within {timeout:.0f} s ({seen}); {meaning(lines)}")


def meaning(lines: list[str]) -> str:
    """What the board's console said, and what that means, for a board that did not upload."""
    if not lines:
        return (
            "the board printed nothing: is the agent installed (the install step) and the "
            "console on this port? Re-run to try again"
        )
    agent = [line for line in lines if line.startswith("parkfleet:")] or lines
    for pattern, why in MEANINGS:
        said = next((line for line in reversed(agent) if pattern.search(line)), None)
        if said is not None:
            return f'the board said "{said[:140]}": {why}; fix it and re-run'
    return f'the board\'s last line was "{agent[-1][:140]}"; re-run to try again'
