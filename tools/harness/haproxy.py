"""HAProxy started from the shipped `deploy/haproxy.cfg` with only its ports moved.

Like `MosquittoBroker`, the configuration a user copies is the one a test or the soak runs: the
lines marked `# cluster:` (frontend bind, stats socket, servers) are rewritten, nothing else.
The instances behind it believe its X-Forwarded-For/-Proto only when told to
(`PARK_TRUSTED_PROXIES=127.0.0.1`, as deploy/systemd/parkfleet.env and so `tools/cluster.py` do).
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tools.harness.net import free_port
from tools.harness.process import ChildProcess
from tools.harness.services import REPO, system_binary

DEPLOY_CONFIG = REPO / "deploy" / "haproxy.cfg"


def haproxy_binary() -> str:
    return system_binary("haproxy", "haproxy is not installed (apt-get install haproxy)")


def render_config(text: str, port: int, socket_path: Path, servers: list[int]) -> str:
    """deploy/haproxy.cfg with the frontend on `port`, the stats socket at `socket_path` and one
    `server` line per instance port (the shipped three are replaced)."""
    lines: list[str] = []
    placed = False
    for line in text.splitlines():
        indent = line[: len(line) - len(line.lstrip())]
        if line.rstrip().endswith("# cluster: frontend"):
            line = f"{indent}bind 127.0.0.1:{port}"
        elif line.rstrip().endswith("# cluster: stats socket"):
            line = f"{indent}stats socket {socket_path} mode 600 level admin"
        elif line.rstrip().endswith("# cluster: server"):
            if placed:
                continue
            placed = True
            lines += [f"{indent}server p{i} 127.0.0.1:{p}" for i, p in enumerate(servers, 1)]
            continue
        lines.append(line)
    out = "\n".join(lines) + "\n"
    if f"bind 127.0.0.1:{port}" not in out or not placed or str(socket_path) not in out:
        raise RuntimeError("deploy/haproxy.cfg lost a `# cluster:` line")
    return out


class HAProxy(ChildProcess):
    """`haproxy -db -f <rendered deploy/haproxy.cfg>` (foreground); `url`: its frontend."""

    def __init__(self, workdir: Path, servers: list[int], port: int | None = None) -> None:
        self.binary = haproxy_binary()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://localhost:{self.port}"
        self.socket_path = workdir / "haproxy.sock"
        self.config = workdir / "haproxy.cfg"
        self.config.write_text(
            render_config(DEPLOY_CONFIG.read_text(), self.port, self.socket_path, servers)
        )
        self.log_path = workdir / "haproxy.log"

    def start(self) -> HAProxy:
        check = subprocess.run(
            [self.binary, "-c", "-q", "-f", str(self.config)], capture_output=True, text=True
        )
        if check.returncode:
            raise RuntimeError(f"haproxy refused its configuration:\n{check.stderr}")
        self._spawn("haproxy", [self.binary, "-db", "-f", str(self.config)], [self.port])
        return self

    def command(self, line: str) -> str:
        """One command on the runtime API (stats socket), e.g. `show stat`."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_stats(self) -> dict[str, dict[str, str]]:
        """Backend server name -> its `show stat` columns (`status`, `stot` requests, ...)."""
        rows = self.command("show stat").splitlines()
        if not rows:
            return {}
        head = rows[0].lstrip("# ").split(",")
        stats = {}
        for row in rows[1:]:
            cols = dict(zip(head, row.split(","), strict=False))
            if cols.get("pxname") == "parkfleet" and cols.get("svname", "").startswith("p"):
                stats[cols["svname"]] = cols
        return stats

    def server_states(self) -> dict[str, str]:
        """Backend server name -> status (`UP`, `DOWN`, ...), from `show stat`."""
        return {name: cols.get("status", "") for name, cols in self.server_stats().items()}
