"""Run the real service (`parkctl serve`) as a separate process on a free port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tools.harness.net import free_port, wait_for_port


class ServiceProcess:
    """`parkctl serve` in a child process; `url` is where it listens."""

    def __init__(
        self,
        data_dir: Path,
        db: str | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.host = host
        self.scheme = "https" if tls else "http"
        self.url = f"{self.scheme}://localhost:{self.port}"
        self.args = [
            sys.executable,
            "-m",
            "provisioning",
            "serve",
            "--host",
            host,
            "--port",
            str(self.port),
            "--data-dir",
            str(data_dir),
            *(["--db", db] if db else []),
            *(["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls else []),
            *(extra_args or []),
        ]
        self.env = {**os.environ, **(env or {})}
        self.log_path = data_dir / f"service-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        try:
            wait_for_port(self.port, timeout=30)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"service did not start:\n{self.log()}") from None
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, verify: bool | str = True) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, verify=verify)

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
