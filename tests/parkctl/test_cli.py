"""Every `parkctl` verb, given bad input, prints one clear `error:` line and exits non-zero; and
each verb loads only what it needs (start-up time is part of the product). Verbs are enumerated
from the parser itself, so a verb added anywhere is walked here too, and fails this test until
it has its bad inputs below.

Real components: `parkctl` in its own process, the real service with an operator from
`parkctl admin create`, simulated boards (tools.simboard) for esptool and mpremote, one with an
all-zero MAC, and a peer that answers every connection with nonsense.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioning.parkctl.cli import build
from tools.harness.parkctl import parkctl
from tools.harness.server import ServiceProcess
from tools.simboard import SimBoard, make_firmware_image

VERBS = sorted(build().all_verbs)
DEAD = "http://127.0.0.1:9"  # nothing listens on the discard port
DEAD_PORT = "socket://127.0.0.1:9"


class Nonsense:
    """A TCP peer that answers anything with bytes no protocol expects."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    @staticmethod
    def _answer(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            try:
                while conn.recv(4096):
                    conn.sendall(b"\x00\xffnonsense \x1b[2J\r\n}{ 42 not a protocol\r\n" * 4)
            except OSError:
                pass


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Placeholders for the bad command lines: boards, servers, files, an operator's env."""
    tmp = tmp_path_factory.mktemp("bad-input")
    firmware = tmp / "ESP32_GENERIC.bin"
    make_firmware_image(firmware, chip="esp32", size=96 * 1024)
    (tmp / "config.json").write_text(json.dumps({"device_id": "dev_x", "client_secret": "s"}))
    (tmp / "not.json").write_text("{port: nope")
    (tmp / "a-file").write_text("not a directory")
    (tmp / "bad-lot.csv").write_text("port,lot\nsocket://127.0.0.1:9,no/slashes\n")
    nonsense = Nonsense()
    data = tmp / "data"
    with (
        ServiceProcess(data) as service,
        SimBoard(tmp / "zero-mac", chip="esp32", mac="00:00:00:00:00:00") as zero,
    ):
        made = parkctl("admin", "create", "--data-dir", str(data), "--json", env=dict(os.environ))
        assert made.returncode == 0, made.stderr
        creds = json.loads(made.stdout)
        (tmp / "zero.csv").write_text(f"port,lot,name\n{zero.url},north,zero\n")
        yield {
            "tmp": str(tmp),
            "firmware": str(firmware),
            "server": service.url,
            "client_id": creds["client_id"],
            "client_secret": creds["client_secret"],
            "zero": zero.url,
            "nonsense_url": f"http://127.0.0.1:{nonsense.port}",
            "nonsense_port": f"socket://127.0.0.1:{nonsense.port}",
        }
    nonsense.sock.close()


def _verb(case: str) -> tuple[str, ...]:
    """The verb a bad command line is for: its first two words if they name one, else its first
    (`serve`, `provision`); an unknown pair of words as they are, for the test below to name."""
    words = tuple(case.removeprefix("@operator ").split())
    return next((words[:n] for n in (2, 1) if words[:n] in VERBS), words[:2])


def _by_verb(cases: list[str]) -> dict[tuple[str, ...], list[str]]:
    grouped: dict[tuple[str, ...], list[str]] = {}
    for case in cases:
        grouped.setdefault(_verb(case), []).append(case)
    return grouped


# Bad command lines ({placeholders} from `world`), each read as the verb its words start with;
# each must fail with one line. "@operator" first: run with the operator's
# PARK_SERVER/PARK_CLIENT_ID/PARK_CLIENT_SECRET.
BAD_INPUT = _by_verb(
    [
        "serve --port 70000 --data-dir {tmp}/serve",
        "serve --port eighty",
        "serve --db bogus://x --data-dir {tmp}/serve",
        "serve --tls-cert {tmp}/missing.pem --tls-key {tmp}/missing.key --data-dir {tmp}/serve",
        "serve --data-dir {tmp}/a-file",
        "serve --mqtt mqtt://user:pass@127.0.0.1:1883 --data-dir {tmp}/serve",
        "serve --mqtt mqtt://user@127.0.0.1:1883 --mqtt-password-file {tmp}/missing",
        "serve --mqtt-password-file {tmp}/missing",
        "serve --workers 2 --data-dir {tmp}/serve",
        "serve --workers 0 --data-dir {tmp}/serve",
        "admin create --data-dir {tmp}/a-file --init",
        "admin create --db bogus://x --data-dir {tmp}/admin --init",
        "admin create --role king --data-dir {tmp}/admin --init",
        "admin create --data-dir {tmp}/no-such-service",
        "admin list",
        "@operator admin list --server {nonsense_url}",
        "@operator admin disable op_nobody",
        "@operator admin disable",
        "@operator admin enable op_nobody --server " + DEAD,
        "@operator admin rotate-secret op_nobody --grace -1",
        "@operator admin rotate-secret op_nobody",
        "@operator admin delete op_nobody",
        "@operator admin audit --limit 0",
        "@operator admin audit --server " + DEAD,
        "@operator admin audit --server {nonsense_url}",
        "keys rotate --data-dir {tmp}/a-file",
        "keys rotate --db bogus://x",
        "keys list --db bogus://x",
        "keys list --data-dir {tmp}/a-file",
        "@operator device register --lot north",
        "@operator device register --lot no/slash --name x",
        "@operator device register --lot north --name x --mac 00:00:00:00:00:00",
        "@operator device register --lot north --name x --server not-a-url",
        "@operator device register --lot north --name x --server http://[::1",
        "device list",  # no operator credentials
        "@operator device list --server {nonsense_url}",
        "@operator device list --ca-cert {tmp}/missing.pem",
        "@operator device list --mac 01:02",
        "@operator device show dev_nobody",
        "@operator device show",
        "@operator device update dev_nobody",
        "@operator device update dev_nobody --name x",
        "@operator device disable dev_nobody --server " + DEAD,
        "@operator device enable dev_nobody",
        "@operator device rotate-secret dev_nobody --grace -1",
        "@operator device rotate-secret dev_nobody",
        "@operator device delete dev_nobody --server {nonsense_url}",
        "@operator lot create north --capacity -1",
        "@operator lot create no/slash",
        "@operator lot create north --server " + DEAD,
        "@operator lot set north",
        "@operator lot set nolot --capacity ten",
        "lot list",
        "@operator lot list --server {nonsense_url}",
        "@operator lot show nolot",
        "@operator lot show",
        "@operator lot delete nolot",
        "@operator lot recount north -1",
        "@operator lot recount north ten",
        "@operator lot recount nolot 3",
        "@operator lot recount no/slash 3",
        "@operator lot recount north",
        "board info --port {zero}",
        "board info --port /dev/ttyUSB99",
        "board info --port {nonsense_port}",
        "board flash --port {zero} --firmware {firmware}",
        "board flash --port {zero} --firmware {tmp}/missing.bin",
        "board flash --port {nonsense_port} --firmware {firmware}",
        "board install --port {nonsense_port} --config {tmp}/config.json",
        "board install --port {zero} --config {tmp}/not.json",
        "board install --port " + DEAD_PORT,
        "@operator provision --port {zero} --lot north --firmware {firmware}",
        "@operator provision --port {zero} --lot no/slash --firmware {firmware}",
        "provision --port {zero} --lot north --firmware {firmware} --server " + DEAD,
        "@operator provision --port {zero} --lot north --firmware {firmware} --token-url tokens",
        "release keygen --out {tmp}/no-such-dir/k.key",
        "release keygen",
        "release build --version 1.0 --key {tmp}/k.key",
        "release build --version 1.0.0 --key {tmp}/k.key --source {tmp}/no-agent",
        "release build --version 1.0.0 --key {tmp}/missing.key",
        "release build --version 1.0.0 --key {tmp}/config.json",
        "@operator release publish {tmp}/no-bundle",
        "@operator release publish {tmp} --server " + DEAD,
        "release list",
        "@operator release list --server {nonsense_url}",
        "@operator release show 9.9.9",
        "@operator release show",
        "@operator rollout start 1.0.0 --lot north --canary-wait soon",
        "@operator rollout start 1.0.0 --lot north --canary -1",
        "@operator rollout start 9.9.9 --lot north",
        "@operator rollout start 1.0.0",
        "@operator rollout start 1.0.0 --lot north --phases 1,x%",
        "@operator rollout start 1.0.0 --lot north --max-crash-rate 2",
        "@operator rollout start 1.0.0 --lot north --min-online -0.1",
        "@operator rollout start 1.0.0 --lot north --parallel 0",
        "@operator rollout status 0",
        "@operator rollout status 99",
        "@operator rollout pause",
        "@operator rollout pause 99",
        "@operator rollout resume x",
        "@operator rollout resume 99",
        "@operator rollout abort 99 --server " + DEAD,
        "@operator rollout abort 99 --rollback",
        "@operator fleet provision {tmp}/zero.csv --firmware {firmware}",
        "@operator fleet provision {tmp}/bad-lot.csv --firmware {firmware}",
        "@operator fleet provision {tmp}/missing.csv --firmware {firmware}",
        "@operator fleet provision {tmp}/zero.csv --firmware {firmware} --sensor nojson",
    ]
)
# Provisioning runs end with the failed boards, one line each, under the first line.
SUMMARY_LINES = {("provision",): 3, ("fleet", "provision"): 3}


@pytest.mark.parametrize("verb", VERBS, ids=" ".join)
def test_bad_input_is_one_clear_line(
    verb: tuple[str, ...], world: dict[str, str], tmp_path: Path
) -> None:
    cases = BAD_INPUT.get(verb)
    assert cases, f"`parkctl {' '.join(verb)}` has no bad-input cases in BAD_INPUT"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PARK_")}
    base |= {"PARK_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200"}
    for case in cases:
        env = dict(base)
        line = case.format(**world)
        if line.startswith("@operator "):
            line = line.removeprefix("@operator ")
            env |= {
                "PARK_SERVER": world["server"],
                "PARK_CLIENT_ID": world["client_id"],
                "PARK_CLIENT_SECRET": world["client_secret"],
            }
        done = parkctl(*line.split(), env=env)
        shown = f"parkctl {line}\nexit {done.returncode}\n{done.stderr}"
        assert done.returncode != 0, shown
        assert "Traceback" not in done.stdout + done.stderr, shown
        errors = done.stderr.strip().splitlines()
        assert errors and errors[0].startswith("error: ") and len(errors[0]) > 20, shown
        assert len(errors) <= SUMMARY_LINES.get(verb, 1), shown


def test_every_bad_input_case_names_a_verb() -> None:
    assert set(BAD_INPUT) <= set(VERBS), set(BAD_INPUT) - set(VERBS)
