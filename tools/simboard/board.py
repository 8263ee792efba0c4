"""One simulated ESP32 behind one serial port (a loopback TCP socket, pyserial's `socket://`).

The board is either in its ROM serial bootloader (`rom.Loader`, answering esptool) or running
MicroPython (`repl.MicroPythonProcess`, answering mpremote and printing the agent's console).
A real bench moves between the two with the reset lines (DTR/RTS drive EN and GPIO0); a TCP
socket has none, so the port itself stands in for them:

- a connection whose first byte is a SLIP END (0xC0), i.e. esptool's SYNC, resets the board into
  download mode, as esptool's default reset sequence would;
- when the host closes the port while the board is in the loader, the board resets and boots
  from flash (esptool's `--after hard-reset` pulses EN, which a socket cannot carry), unless the
  host asked to stay in the loader (`--after no-reset` with the stub);
- the ROM's "run user code" (FLASH_END with flag 1: esptool `run`, `--after soft-reset`) and the
  stub's RUN_USER_CODE boot from flash at once, on the same connection (the stub only
  acknowledges FLASH_END 1, as the real one does);
- the board boots MicroPython only if flash holds a valid image for its chip at the app offset
  (0x1000 on ESP32, 0x0 on ESP32-S3/C3); otherwise it stays in the bootloader.

A new connection replaces an older one, as when a serial port is reopened. Everything the board
prints while running MicroPython is appended to `console.log`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tools.simboard.chips import Chip, Registers
from tools.simboard.flash import Flash
from tools.simboard.image import is_bootable
from tools.simboard.links import Link, PtyLink, PtyPort, SocketLink
from tools.simboard.repl import RESET_EXIT, MicroPythonProcess, micropython_binary
from tools.simboard.rom import Action, Fault, Loader
from tools.simboard.slip import SlipDecoder, encode

log = logging.getLogger("simboard")

ROM_BAUD = 115200  # the ROM's and MicroPython's UART rate after reset
BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop
VANISH_COPY_AFTER = 1024  # vanish-mid-copy: bytes of a file copy that get through first
_SOFT_REBOOT = b"MPY: soft reboot\r\n"
# What the ROM prints before it starts the app, by reset kind (ESP32, then later chips).
_RESET_LINES = {
    "esp32": {
        "power_on": b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n",
        "hard": b"rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n",
        "soft": b"rst:0xc (SW_CPU_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n",
    },
    "later": {
        "power_on": b"rst:0x1 (POWERON),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\n",
        "hard": b"rst:0x1 (POWERON),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\n",
        "soft": b"rst:0x3 (RTC_SW_SYS_RST),boot:0x8 (SPI_FAST_FLASH_BOOT)\r\n",
    },
}


@dataclass(frozen=True)
class BoardConfig:
    board_dir: Path
    chip: Chip
    mac: bytes
    flash_size: int
    baud_limit: int | None = None  # throttle to min(this, the UART's baud) / 10 bytes per second
    fault: Fault | None = None
    vanish_seconds: float = 10.0  # how long a vanished board stays unplugged
    host: str = "127.0.0.1"
    port: int = 0
    pty: bool = False  # also offer the line on a pty (hosts connect there with no-reset modes)


class Throttle:
    """Paces one direction of the line to what a UART at the current baud rate can carry."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.baud = ROM_BAUD
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self, nbytes: int) -> None:
        if not self.limit:
            return
        rate = min(self.limit, self.baud) / BITS_PER_BYTE
        with self._lock:
            now = time.monotonic()
            self._next = max(now, self._next) + nbytes / rate
            delay = self._next - now
        if delay > 0:
            time.sleep(delay)


class Board:
    """The simulator: listener, routing between loader and MicroPython, faults."""

    def __init__(self, config: BoardConfig) -> None:
        self.config = config
        self.chip = config.chip
        config.board_dir.mkdir(parents=True, exist_ok=True)
        self.fs_dir = config.board_dir / "fs"
        self.fs_dir.mkdir(exist_ok=True)
        self.flash = Flash(config.board_dir / "flash.bin", config.flash_size)
        self._console = (config.board_dir / "console.log").open("ab", buffering=0)
        self._binary = micropython_binary()
        self._fault = config.fault
        self._lock = threading.RLock()
        self._send_lock = threading.Lock()
        self._rx = Throttle(config.baud_limit)
        self._tx = Throttle(config.baud_limit)
        self._listener: socket.socket | None = None
        self._client: Link | None = None
        self._pty: PtyPort | None = None
        self._loader: Loader | None = None
        self._app: MicroPythonProcess | None = None
        self._stay_in_loader = False
        self._reset_cause = "power_on"
        self._copy_bytes = -1  # vanish-mid-copy: bytes since a file copy started, -1 = none yet
        self._stopped = threading.Event()
        self.port = config.port

    @property
    def url(self) -> str:
        return f"socket://{self.config.host}:{self.port}"

    @property
    def pty_path(self) -> str | None:
        return self._pty.path if self._pty else None

    @property
    def app_pid(self) -> int | None:
        return self._app.pid if self._app else None

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._listen()
        with self._lock:
            self._boot_from_flash("power_on")

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            self._close_listener()
            self._drop_client()
            self._power_off()
        self._console.close()

    def wait(self) -> None:
        self._stopped.wait()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.config.host, self.port))
        listener.listen(4)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True).start()
        log.info("listening on %s", self.url)
        if self.config.pty:
            self._pty = PtyPort(self._serve_pty)
            log.info("pty at %s", self._pty.path)

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        if self._pty is not None:
            self._pty.close()
            self._pty = None

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # closed: the board vanished or stops
            link = SocketLink(conn)
            self._begin_session(link)
            threading.Thread(target=self._serve, args=(link,), daemon=True).start()

    def _serve_pty(self, link: PtyLink) -> None:
        self._begin_session(link)
        self._serve(link)

    def _begin_session(self, link: Link) -> None:
        with self._lock:
            self._drop_client()
            self._client = link
            self._copy_bytes = -1
        log.info("host connected (%s)", type(link).__name__)

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- the serial line ---------------------------------------------------------------------

    def _serve(self, conn: Link) -> None:
        decoder = SlipDecoder()
        first = True
        try:
            while True:
                data = conn.recv()
                if not data:
                    break
                self._rx.wait(len(data))
                with self._lock:
                    if self._client is not conn:
                        break
                    if first and data[0] == 0xC0:
                        if self._loader is None:
                            log.info("SLIP from the host: reset into download mode")
                            self._enter_loader()
                        # A new esptool session: how it ends decides again whether to boot.
                        self._stay_in_loader = False
                    first = False
                    if self._loader is not None:
                        for frame in decoder.feed(data):
                            self._handle_frame(frame)
                            if self._client is not conn:
                                return
                    elif self._app is not None:
                        self._to_app(data)
        finally:
            self._host_closed(conn)

    def _send(self, data: bytes) -> None:
        client = self._client
        if client is None:
            return
        self._tx.wait(len(data))
        with self._send_lock:
            client.send(data)

    def _host_closed(self, conn: Link) -> None:
        with self._lock:
            if self._client is not conn:
                return  # replaced by a newer connection, or the board vanished
            self._drop_client()
            log.info("host disconnected")
            if self._loader is not None and not self._stay_in_loader:
                self._boot_from_flash("hard")  # the EN pulse esptool cannot send over TCP

    # -- bootloader mode ---------------------------------------------------------------------

    def _enter_loader(self) -> None:
        self._power_off()
        regs = Registers(
            self.chip, self.config.mac, self.flash.jedec_id, self._fault is Fault.WRONG_MAGIC
        )
        self._loader = Loader(self.chip, self.flash, regs, self._fault)
        self._stay_in_loader = False
        self._set_baud(ROM_BAUD)
        self._set_state("bootloader")

    def _handle_frame(self, frame: bytes) -> None:
        loader = self._loader
        assert loader is not None
        for response in loader.handle(frame):
            self._send(encode(response))
        if loader.regs.baud != self._rx.baud:
            self._set_baud(loader.regs.baud)
        if loader.action is Action.VANISH:
            self._vanish("halfway through a flash write")
        elif loader.action is Action.STAY:
            self._stay_in_loader = True
        elif loader.action is Action.RUN_APP:
            log.info("loader: run user code")
            self._boot_from_flash("hard")

    def _set_baud(self, baud: int) -> None:
        self._rx.baud = self._tx.baud = baud

    # -- MicroPython mode --------------------------------------------------------------------

    def _boot_from_flash(self, cause: str) -> None:
        """Reset: boot the app if flash holds a valid image, else wait in the bootloader."""
        self._power_off()
        offset = self.chip.app_offset
        if not is_bootable(
            self.flash.read(offset, self.flash.size - offset), self.chip.image_chip_id
        ):
            log.info("no valid image at %#x: staying in the bootloader", offset)
            self._enter_loader()
            return
        self._reset_cause = cause
        family = "esp32" if self.chip.key == "esp32" else "later"
        self._print(_RESET_LINES[family][cause])
        self._start_app(raw_repl=False)

    def _start_app(self, raw_repl: bool) -> None:
        self._loader = None
        self._set_baud(ROM_BAUD)
        env = {
            "PARKSIM_MAC": self.config.mac.hex(":"),
            "PARKSIM_RESET_CAUSE": self._reset_cause,
            "PARKSIM_RESET_EXIT": str(RESET_EXIT),
            "PARKSIM_FS_FULL": "1" if self._fault is Fault.FLASH_FULL else "0",
        }
        holder: list[MicroPythonProcess] = []
        app = MicroPythonProcess(
            self._binary,
            self.fs_dir,
            env,
            raw_repl,
            on_output=self._print,
            on_exit=lambda code: self._app_exited(holder[0], code),
        )
        holder.append(app)
        self._app = app
        self._set_state("micropython")
        log.info(
            "MicroPython started (pid %d, %s REPL)", app.pid, "raw" if raw_repl else "friendly"
        )

    def _app_exited(self, app: MicroPythonProcess, code: int) -> None:
        with self._lock:
            if self._app is not app:
                return  # already replaced: powered off or reset into the bootloader
            self._app = None
            log.info("MicroPython exited with status %d", code)
            if code == 0:
                self._print(_SOFT_REBOOT)
                self._start_app(raw_repl=app.raw_repl)
                return
            if code != RESET_EXIT:
                self._print(f"\r\nabort(): MicroPython exited with status {code}\r\n".encode())
                time.sleep(0.5)  # a crash loop must not spin
            self._boot_from_flash("soft")

    def _to_app(self, data: bytes) -> None:
        assert self._app is not None
        if self._fault is Fault.VANISH_MID_COPY:
            if self._copy_bytes < 0 and b"'wb')" in data:
                self._copy_bytes = 0  # mpremote fs_writefile() opened a file for writing
            elif self._copy_bytes >= 0:
                self._copy_bytes += len(data)
                if self._copy_bytes >= VANISH_COPY_AFTER:
                    self._vanish("in the middle of a file copy")
                    return
        self._app.write(data)

    def _set_state(self, mode: str) -> None:
        """Record the board's mode in `state.json` for tests and tools ("bootloader",
        "micropython", "unplugged"); written atomically."""
        state = {"mode": mode, "url": self.url, "pty": self.pty_path, "app_pid": self.app_pid}
        tmp = self.config.board_dir / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(self.config.board_dir / "state.json")

    def _print(self, data: bytes) -> None:
        """What the board prints: to the console log and, if a host is connected, the port."""
        self._console.write(data)
        self._send(data)

    def _power_off(self) -> None:
        app, self._app = self._app, None
        if app is not None:
            app.stop()
        self._loader = None

    # -- faults ------------------------------------------------------------------------------

    def _vanish(self, when: str) -> None:
        """The board drops off the bus (cable pulled) and comes back `vanish_seconds` later."""
        log.warning("vanishing %s for %.1f s", when, self.config.vanish_seconds)
        self._fault = None  # one-shot: after replugging the board works
        self._close_listener()
        self._drop_client()
        self._power_off()
        self._set_state("unplugged")
        timer = threading.Timer(self.config.vanish_seconds, self._replug)
        timer.daemon = True
        timer.start()

    def _replug(self) -> None:
        if self._stopped.is_set():
            return
        with self._lock:
            self._listen()
            self._boot_from_flash("power_on")
        log.info("board is back")
