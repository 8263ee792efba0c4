"""A private PostgreSQL cluster (`initdb`/`pg_ctl`) in a temporary directory on a free port.

Never the machine's own cluster: a soak or test may stop and start this one at will. As root,
PostgreSQL refuses to run, so initdb and the server run as the `postgres` user (`runuser`) and the
directory is handed to that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from tools.harness.net import free_port, wait_for_port
from tools.harness.process import Logged
from tools.harness.services import missing


def postgres_bindir() -> Path:
    """The newest /usr/lib/postgresql/*/bin holding initdb (Debian's layout)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        missing("PostgreSQL server binaries (initdb) not found under /usr/lib/postgresql")
    return Path(found[-1]).parent


class PostgresCluster(Logged):
    """`initdb` once, then `start()`/`stop()` as often as needed; `url` names the database."""

    def __init__(self, root: Path, database: str = "parkfleet") -> None:
        self.bindir = postgres_bindir()
        self.root = root
        self.datadir = root / "pgdata"
        self.log_path = root / "postgres.log"
        self.port = free_port()
        self.database = database
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            if not shutil.which("runuser"):
                missing("running as root needs runuser to start PostgreSQL as `postgres`")
            self._prefix = ["runuser", "-u", "postgres", "--"]
        root.mkdir(parents=True, exist_ok=True)
        self._initdb()

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._prefix, *argv], capture_output=True, text=True, check=False, cwd=self.root
        )

    def _initdb(self) -> None:
        if self._prefix:
            entry = pwd.getpwnam("postgres")
            # A mkdtemp() ancestor is 0700: `postgres` must at least pass through it.
            for parent in self.root.parents:
                mode = os.stat(parent).st_mode
                if not mode & 0o001 and os.stat(parent).st_uid == os.geteuid():
                    os.chmod(parent, mode | 0o711)
            for path in (self.root, *self.root.rglob("*")):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        done = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
        )
        if done.returncode:
            raise RuntimeError(f"initdb failed:\n{done.stdout}{done.stderr}")
        # Sized for a soak of hundreds of boards and three instances (each keeps a pool).
        with (self.datadir / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\nmax_connections = 200\n"
                "shared_buffers = 64MB\nfsync = on\n"
            )

    def start(self) -> PostgresCluster:
        """`pg_ctl start` and wait for connections; creates the database on first start."""
        done = self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.log_path),
            "-w",
            "-t",
            "60",
            "start",
        )
        if done.returncode:
            raise RuntimeError(f"PostgreSQL did not start:\n{done.stdout}{self.log()}")
        wait_for_port(self.port, timeout=30)
        self._create_database()
        return self

    def _create_database(self) -> None:
        from sqlalchemy import create_engine, text

        admin = create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        try:
            with admin.connect() as conn:
                exists = conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": self.database}
                ).first()
                if not exists:
                    conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        finally:
            admin.dispose()

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast`: clients are disconnected, the cluster shuts down cleanly."""
        if self.running():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "stop")

    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def pid(self) -> int | None:
        """The postmaster's process id while it runs."""
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
