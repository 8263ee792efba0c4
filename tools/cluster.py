"""`make cluster`: the deploy/ layout on one machine, until Ctrl-C.

Its own PostgreSQL cluster (initdb in a temporary directory, on a free port: never the machine's),
Mosquitto from broker-config/, three `parkctl serve` instances sharing that database and one data
directory (signing keys, secret-hash key), and HAProxy from deploy/haproxy.cfg in front. The soak
(tools/soak.py) and its test drive the same `Cluster`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from provisioning.store.db import migrate
from tools.harness.haproxy import HAProxy
from tools.harness.mosquitto import MosquittoBroker
from tools.harness.net import free_port
from tools.harness.pgcluster import PostgresCluster
from tools.harness.server import ServiceProcess
from tools.harness.services import REPO, ServiceMissing

DEPLOY_ENV = REPO / "deploy" / "systemd" / "parkfleet.env"
# The cluster sets these itself (its own database, data directory, issuer URL and broker).
_OWN = ("PARK_DB", "PARK_DATA_DIR", "PARK_ISSUER", "PARK_MQTT_URL")
# On one machine every simulated board reaches HAProxy from 127.0.0.1, so the per-address
# failure limits (which behind the trusted proxy key on each board's own address) would count
# the whole fleet as one client: a few disabled boards retrying would lock out the rest.
ONE_ADDRESS_FLEET = {
    "PARK_AUTH_FAIL_SOURCE_BURST": "100000",
    "PARK_AUTH_FAIL_SOURCE_PER_HOUR": "1000000",
}


def deploy_env() -> dict[str, str]:
    """The shipped parkfleet.env's settings, but those the cluster chooses for itself."""
    env = {}
    for line in DEPLOY_ENV.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#") and name not in _OWN:
            env[name.strip()] = value.strip()
    return env


class Cluster:
    """PostgreSQL, Mosquitto, `instances` services and HAProxy, started in that order."""

    def __init__(self, root: Path, instances: int = 3, extra_env: dict[str, str] | None = None):
        self.root = root
        self.data_dir = root / "data"
        self.pg = PostgresCluster(root / "pg")
        self.broker = MosquittoBroker(root / "mqtt")
        self.lb_port = free_port()
        env = {
            **deploy_env(),
            **ONE_ADDRESS_FLEET,
            "PARK_MQTT_URL": self.broker.url(),
            "PARK_ISSUER": f"http://localhost:{self.lb_port}",
            **(extra_env or {}),
        }
        self.services = [
            ServiceProcess(self.data_dir, db=self.pg.url, env=env) for _ in range(instances)
        ]
        self.lb = HAProxy(root / "haproxy", [s.port for s in self.services], port=self.lb_port)
        self.url = self.lb.url

    def start(self) -> Cluster:
        # Keys and the hash key live here: the service refuses a directory others can read.
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        self.pg.start()
        migrate(self.pg.url)
        self.broker.start()
        # One after the other: the first creates the shared keys and secret-hash key.
        for service in self.services:
            service.start()
        self.lb.start()
        self.wait_all_up()
        return self

    def wait_all_up(self, timeout: float = 30) -> float:
        """Block until HAProxy's health checks pass on every instance; returns the seconds."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            states = self.lb.server_states()
            if states and all(s.startswith("UP") for s in states.values()):
                return time.monotonic() - start
            time.sleep(0.2)
        raise RuntimeError(f"instances not UP behind HAProxy: {self.lb.server_states()}")

    def stop(self) -> None:
        """Reverse order; each part stops even if another failed to."""
        for stop in (self.lb.stop, *(s.stop for s in self.services), self.broker.stop):
            try:
                stop()
            except Exception as error:  # noqa: BLE001 - keep stopping the rest
                print(f"cluster: stop failed: {error}", file=sys.stderr)
        self.pg.stop()

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Start the layout, print where each part listens, stop everything on Ctrl-C/SIGTERM."""
    parser = argparse.ArgumentParser(prog="tools.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=3)
    args = parser.parse_args(argv)

    def stop(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    with tempfile.TemporaryDirectory(prefix="parkfleet-cluster-") as tmp:
        try:
            with Cluster(Path(tmp), args.instances) as cluster:
                print(f"HAProxy      {cluster.url}  (stats: {cluster.lb.socket_path})")
                for i, s in enumerate(cluster.services, 1):
                    print(f"instance p{i}  {s.url}  log {s.log_path}")
                print(f"PostgreSQL   {cluster.pg.url}")
                print(f"Mosquitto    mqtt://127.0.0.1:{cluster.broker.port}")
                print(f"data dir     {cluster.data_dir}")
                print("Ctrl-C stops everything.", flush=True)
                while True:
                    time.sleep(3600)
        except ServiceMissing as error:
            print(f"cluster: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
