"""The real service with registered boards, and agents under the MicroPython Unix port."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from provisioning.common.bundle import install_plan, stage_install
from provisioning.parkctl.release.mpy import DEVICE_DIR, compile_dir
from provisioning.service.auth.secrets import SecretHasher
from provisioning.service.registry import service as registry
from provisioning.store.db import make_engine, migrate, session_factory
from tools.harness.server import ServiceProcess
from tools.harness.services import REPO

UNIXPORT = REPO / "tools" / "unixport"
# A MicroPython warning ("Warning: Comparison between bytes and str") or a traceback on a board's
# console is a defect, whatever else the test checks.
_CONSOLE_FAULT = re.compile(r"Warning:|Traceback \(most recent call last\)")


def console_faults(text: str) -> list[str]:
    """The lines of a board's console that show a MicroPython warning or a traceback."""
    return [line for line in text.splitlines() if _CONSOLE_FAULT.search(line)]


def check_console(text: str, where: str) -> None:
    """Fail (AssertionError naming the lines) when a board's console shows a MicroPython
    warning or a traceback."""
    faults = console_faults(text)
    if faults:
        shown = "\n".join(faults[:10])
        raise AssertionError(f"{where}: MicroPython warning or traceback on the console:\n{shown}")


def micropython_env(
    extra: dict[str, str] | None = None, with_device: bool = False, compiled: bool = False
) -> dict[str, str]:
    """Environment for `micropython`: the shims (and optionally device/) on MICROPYPATH.

    `.frozen` stays on the path because the Unix port's `ssl` is a frozen module. `compiled`
    puts the shims there as .mpy, like the board's own modules (nothing left to compile later).
    """
    path = [str(compile_dir(UNIXPORT) if compiled else UNIXPORT), ".frozen"]
    if with_device:
        path.insert(0, str(DEVICE_DIR))
    return {**os.environ, "MICROPYPATH": ":".join(path), **(extra or {})}


def make_board(
    root: Path,
    config: dict[str, object],
    cars: int = 0,
    compiled: bool = False,
    release: Path | None = None,
) -> Path:
    """A board's filesystem: the agent, config.json beside it, a cars.txt sensor file.

    `compiled` ships the agent exactly as `parkctl board install` does (`install_plan()`: the
    boot stub at the root, .mpy modules in app_a/, app.json; `release`: that built release,
    whose key goes into config.json); otherwise device/ is copied as source, flat.
    """
    root.mkdir(parents=True, exist_ok=True)
    if compiled or release:
        plan = install_plan(release)
        stage_install(plan, root)
        if plan.release_key:
            config = {**config, "release_key": plan.release_key}
    else:
        for src in DEVICE_DIR.glob("*.py"):
            shutil.copy(src, root / src.name)
    (root / "config.json").write_text(json.dumps(config))
    (root / "cars.txt").write_text(str(cars))
    return root


class Backend:
    """`parkctl serve` on a free port plus direct access to its SQLite store for assertions."""

    def __init__(
        self,
        root: Path,
        token_ttl: int | None = None,
        tls: tuple[Path, Path] | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ):
        self.data_dir = root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db_path = self.data_dir / "parkfleet.db"
        self.db_url = f"sqlite:///{self.db_path}"
        migrate(self.db_url)
        args = ["--token-ttl", str(token_ttl)] if token_ttl else []
        args += extra_args or []
        self.service = ServiceProcess(self.data_dir, extra_args=args, env=env, tls=tls)
        self.url = self.service.url
        self.port = self.service.port

    def start(self) -> Backend:
        self.service.start()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.service.stop(sig)

    def restart(self) -> None:
        self.service.start()

    def create_device(self, lot: str = "lot-a", enabled: bool = True) -> tuple[str, str]:
        """Register a board through the registry; returns (client_id, client_secret)."""
        engine = make_engine(self.db_url)
        try:
            with session_factory(engine).begin() as session:
                client, secret = registry.create_device(
                    session, SecretHasher.from_data_dir(self.data_dir), "test", lot, "board"
                )
                client_id = client.client_id
            if not enabled:
                with session_factory(engine).begin() as session:
                    registry.disable(session, "test", client_id)
        finally:
            engine.dispose()
        return client_id, secret

    def create_operator(self) -> tuple[str, str]:
        """An operator client (admin API); returns (client_id, client_secret)."""
        engine = make_engine(self.db_url)
        try:
            with session_factory(engine)() as session:
                client, secret = registry.create_operator(
                    session, SecretHasher.from_data_dir(self.data_dir), "test", "ops"
                )
                return client.client_id, secret
        finally:
            engine.dispose()

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        # closing(): a sqlite3 connection's own `with` commits but never closes, and a test that
        # polls would run out of file descriptors.
        with closing(sqlite3.connect(self.db_path, timeout=10)) as conn, conn:
            return conn.execute(sql, args).fetchall()

    def seqs(self, device_id: str) -> list[int]:
        """Stored readings' seq numbers for a device, in order (duplicates would show twice)."""
        rows = self.query("SELECT seq FROM readings WHERE device_id = ? ORDER BY seq", device_id)
        return [int(r[0]) for r in rows]

    def readings(self, device_id: str) -> list[tuple[int, int, float | None]]:
        sql = "SELECT seq, cars, ts FROM readings WHERE device_id = ? ORDER BY seq"
        return [(int(s), int(c), t) for s, c, t in self.query(sql, device_id)]

    def gate_readings(self, device_id: str) -> list[tuple[int, int, int]]:
        """A gate board's stored (seq, in, out), in seq order."""
        sql = "SELECT seq, gate_in, gate_out FROM readings WHERE device_id = ? ORDER BY seq"
        return [(int(s), int(i), int(o)) for s, i, o in self.query(sql, device_id)]

    def tokens_issued(self, device_id: str) -> int:
        """Token issuance from the audit log (one row per token the server signed; the row is
        committed before the token is handed out)."""
        sql = "SELECT count(*) FROM audit_log WHERE action = 'token.issue' AND target = ?"
        return int(self.query(sql, device_id)[0][0])

    def health(self, device_id: str) -> Any:
        rows = self.query("SELECT health FROM device_state WHERE device_id = ?", device_id)
        return json.loads(rows[0][0]) if rows and rows[0][0] else None


def board_config(
    device_id: str, secret: str, base_url: str, token_base: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A config.json as the provisioning tool writes it, tuned for fast tests."""
    config: dict[str, Any] = {
        "device_id": device_id,
        "client_secret": secret,
        "token_url": (token_base or base_url) + "/oauth/token",
        "audience": "parkfleet-ingest",
        "ingest_url": base_url,
        "lot": "lot-a",
        "interval_s": 0.2,
        "sensor": {"kind": "file", "path": "cars.txt"},
        "wifi": {"ssid": "test-lot", "password": "wifi-pass"},
        "http_timeout_s": 1,
        "backoff_base_s": 0.2,
        "backoff_cap_s": 1,
        "auth_backoff_cap_s": 2,
        "health_every_s": 1,
    }
    config.update(extra)
    return config


class AgentProcess:
    """The agent (`main.py`) in a board directory, run by the MicroPython Unix port.

    `kill()` fails (AssertionError) when the console shows a MicroPython warning or a
    traceback; a test that crashes its agent on purpose says so with `allow_tracebacks=True`
    (warnings fail all the same).
    """

    def __init__(
        self,
        micropython: str,
        board: Path,
        heap: str = "64K",
        env: dict[str, str] | None = None,
        compiled: bool = False,
        allow_tracebacks: bool = False,
    ):
        self.argv = [micropython, "-X", f"heapsize={heap}", "main.py"]
        self.board = board
        self.allow_tracebacks = allow_tracebacks
        self.env = micropython_env(env, compiled=compiled)
        self.log_path = board.parent / f"{board.name}.console"
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def on_new_board(
        cls,
        micropython: str,
        root: Path,
        config: dict[str, Any],
        compiled: bool = True,
        **kwargs: Any,
    ) -> AgentProcess:
        """A fresh board running the agent; compiled (.mpy) boards get a board-sized 64 KB heap.

        From source the Unix port (64-bit, so about twice an ESP32's heap per object) also needs
        room to compile, hence 128 KB.
        """
        kwargs.setdefault("heap", "64K" if compiled else "128K")
        board = make_board(root, config, cars=3, compiled=compiled)
        return cls(micropython, board, compiled=compiled, **kwargs)

    def start(self) -> AgentProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, cwd=self.board, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Stop the agent, then check its console (see the class docstring)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        self.proc = None
        self.check_console()

    def check_console(self) -> None:
        """AssertionError with the offending lines when the console shows a MicroPython
        warning, or a traceback unless this agent is allowed to crash."""
        text = self.console()
        if self.allow_tracebacks:
            text = "\n".join(line for line in text.splitlines() if "Warning:" in line)
        check_console(text, str(self.board))

    def console(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def lines(self, pattern: str) -> list[str]:
        return [line for line in self.console().splitlines() if re.search(pattern, line)]

    def wait_for(self, pattern: str, timeout: float = 15.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.lines(pattern)) >= count:
                return
            if self.proc and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {count}x /{pattern}/ on the console:\n{self.console()}")


class RebootingBoard:
    """A board on the Unix port that reboots whenever main.py exits (reset, crash, kill -9)."""

    def __init__(
        self,
        micropython: str,
        root: Path,
        config: dict[str, Any],
        release: Path,
        heap: str = "64K",
        allow_tracebacks: bool = False,
    ):
        make_board(root, config, cars=3, release=release)
        self.agent = AgentProcess(
            micropython, root, heap=heap, compiled=True, allow_tracebacks=allow_tracebacks
        )
        self.boots = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.boots += 1
            self.agent.start()
            proc = self.agent.proc
            assert proc is not None
            while proc.poll() is None and not self._stop.is_set():
                time.sleep(0.05)

    def start(self) -> RebootingBoard:
        self._thread.start()
        return self

    def power_cut(self) -> None:
        proc = self.agent.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        """Stop rebooting and cut the power; then check the console as `AgentProcess.kill`."""
        self._stop.set()
        self.power_cut()
        self._thread.join(timeout=10)
        self.agent.check_console()

    def app(self) -> list[str]:
        """The boot stub's state file: cur ver prev pver try bad (device/appdir.py)."""
        return (self.agent.board / "state").read_text().splitlines()[0].split()
