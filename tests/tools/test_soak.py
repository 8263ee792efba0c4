"""The soak machinery on a short run: the deploy/ layout (own PostgreSQL, three instances behind
HAProxy, Mosquitto), 30 real agents, one instance killed with -9 and back after 30 s.

`make soak` runs the full one (500 boards, 10 minutes, every fault); this keeps it working.
"""

from __future__ import annotations

from pathlib import Path

from tools import soak
from tools.cluster import deploy_env
from tools.harness.haproxy import DEPLOY_CONFIG, render_config


def test_cluster_config_is_the_shipped_one_with_ports_moved(tmp_path: Path) -> None:
    shipped = DEPLOY_CONFIG.read_text()
    rendered = render_config(shipped, 18080, tmp_path / "s.sock", [18001, 18002, 18003, 18004])
    assert "bind 127.0.0.1:18080" in rendered
    assert [line.split()[-1] for line in rendered.splitlines() if " server p" in line] == [
        f"127.0.0.1:{p}" for p in (18001, 18002, 18003, 18004)
    ]
    assert "http-check send meth GET uri /readyz" in rendered
    kept = [line for line in shipped.splitlines() if "# cluster:" not in line]
    assert all(line in rendered.splitlines() for line in kept)
    # HAProxy replaces the client's forwarded headers, and the instances believe only it.
    assert "    http-request del-header X-Forwarded-For" in kept
    assert "    http-request set-header X-Forwarded-Proto http unless { ssl_fc }" in kept
    assert deploy_env()["PARK_TRUSTED_PROXIES"] == "127.0.0.1"


def test_short_soak_with_an_instance_killed(tmp_path: Path, micropython: str) -> None:
    ok, report = soak.run(tmp_path, boards=30, duration=50, faults=("kill",))
    print(report)
    assert ok, report
    assert "kill -9 instance p1" in report
    assert "lost 0, doubled 0" in report
