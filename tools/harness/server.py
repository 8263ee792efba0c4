"""Run the real service (`parkctl serve`) as a separate process on a free port."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import httpx

from tools.harness.net import free_port
from tools.harness.process import ChildProcess


class ServiceProcess(ChildProcess):
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

    def start(self) -> ServiceProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._spawn("service", self.args, [self.port], timeout=30, env=self.env)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        super().stop(sig, timeout)

    def client(self, verify: bool | str = True) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, verify=verify)
