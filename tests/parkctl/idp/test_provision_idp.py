"""Boards as clients of an external authorization server, end to end: `parkctl provision --idp`
a simulated board against node-oidc-provider and against the Auth0 double, the real agent gets
its token there and posts counts, the service (trusting that issuer) stores them; disable,
enable, rotate and delete act on both sides; partial failures leave nothing half-made; a 429
is waited out."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.idp.auth0 import Auth0Tenant
from provisioning.parkctl.idp.sealed import RegistrationStore
from provisioning.parkctl.idp.twosided import TwoSided
from tests.parkctl.idp.conftest import External, wait_refused
from tools.harness.auth0double import Auth0Double
from tools.harness.parkctl import parkctl
from tools.simboard import SimBoard

# A simulated board reads its count from a file (a real board's default, the gate sensor, sees
# no cars here).
FILE_SENSOR = '{"kind": "file", "path": "cars.txt"}'
FAST = ["--interval", "1", "--verify-timeout", "60", "--sensor", FILE_SENSOR]


def _cars(board: SimBoard, cars: int) -> None:
    board.fs_dir.mkdir(parents=True, exist_ok=True)
    (board.fs_dir / "cars.txt").write_text(f"{cars}\n")


def _config(board: SimBoard) -> dict[str, object]:
    return dict(json.loads((board.fs_dir / "config.json").read_text()))


def _provision(ext: External, board: SimBoard, firmware: Path, name: str) -> (
    subprocess.CompletedProcess[str]
):  # fmt: skip
    ca = ["--ca-cert", str(ext.ca_pem)] if ext.ca_pem else []
    return parkctl(
        "provision", "--port", board.url, "--lot", "north", "--name", name,
        "--firmware", str(firmware), "--idp", ext.idp_url, *ca, *FAST, env=ext.env,
    )  # fmt: skip


def _device_clients(ext: External) -> int:
    """Board clients at the external server (Auth0 double only: the provider lists none)."""
    assert isinstance(ext.server, Auth0Double)
    return len(ext.server.device_clients())


@pytest.mark.parametrize("kind", ["auth0", "oidc"])
def test_board_counts_end_to_end(
    kind: str, request: pytest.FixtureRequest, firmware: Path, tmp_path: Path
) -> None:
    ext: External = request.getfixturevalue(kind)
    with SimBoard(tmp_path / "board", chip="esp32", mac="24:0a:c4:00:20:01") as board:
        _cars(board, 9)
        first = _provision(ext, board, firmware, "gate-1")
        assert first.returncode == 0, first.stdout + first.stderr
        [device] = ext.operator.devices()
        assert (device.issuer, device.mac, device.lot) == (ext.issuer, "24:0a:c4:00:20:01", "north")
        assert ext.operator.wait_for_reading(device.client_id, timeout=60).reading is not None
        config = _config(board)
        assert config["device_id"] == device.client_id and config["audience"] == ext.audience
        if kind == "auth0":
            assert config["token_url"] == ext.issuer + "oauth/token"
            assert config["token_body"] == "json"
        else:
            assert str(config["token_url"]).startswith(ext.issuer)
            assert config["token_audience_param"] == "resource"
            assert config["token_scope"] == "counts:write"
            registrations = Path(ext.env["PARK_IDP_REGISTRATIONS"])
            assert stat.S_IMODE(registrations.stat().st_mode) == 0o600
            entry = RegistrationStore(registrations).get(ext.issuer, device.client_id)
            assert entry is not None  # sealed: the token itself is not in the file
            assert entry["registration_access_token"] not in registrations.read_text()
        secret = str(config["client_secret"])

        # The same board again: the same client (the MAC binding holds on both sides).
        again = _provision(ext, board, firmware, "gate-1b")
        assert again.returncode == 0, again.stdout + again.stderr
        [device2] = ext.operator.devices()
        assert (device2.client_id, device2.name) == (device.client_id, "gate-1b")
        new_secret = str(_config(board)["client_secret"])
        if kind == "auth0":
            assert new_secret != secret and _device_clients(ext) == 1
        texts = [first.stdout, first.stderr, again.stdout, again.stderr,
                 ext.operator.service.log(), ext.server.log()]  # fmt: skip
        for text in texts:
            assert secret not in text and new_secret not in text
        data = ext.operator.service.data_dir  # parkfleet's database keeps no secret of it
        for stored in data.glob("parkfleet.db*"):
            content = stored.read_bytes()
            assert secret.encode() not in content and new_secret.encode() not in content

    # A disable in parkfleet refuses the board's posts within 1 s, whatever the token's life.
    # (`--` before the client ID: node-oidc-provider's may start with "-".)
    token = ext.board_token(device.client_id, new_secret).json()["access_token"]
    assert ext.post_counts(token, 900) == 200
    off = parkctl("device", "disable", "--idp", ext.idp_url, "--", device.client_id, env=ext.env)
    assert off.returncode == 0, off.stdout + off.stderr
    refused_after = wait_refused(ext, token, time.monotonic())
    print(f"{kind}: posts refused {refused_after:.3f} s after `device disable` returned")
    assert refused_after <= 1.0
    if kind == "auth0":  # no grant any more: no new token either
        assert ext.board_token(device.client_id, new_secret).status_code == 403
    on = parkctl("device", "enable", "--idp", ext.idp_url, "--", device.client_id, env=ext.env)
    assert on.returncode == 0, on.stdout + on.stderr
    # As the agent does on a refusal: a new token, again. The service refuses tokens issued
    # before the second after a state change (`iat` is whole seconds, and the external server
    # sets it), so the board counts again within about a second of the enable.
    deadline = time.monotonic() + 3.0
    while True:
        token = ext.board_token(device.client_id, new_secret).json()["access_token"]
        if ext.post_counts(token, 901) == 200:
            break
        assert time.monotonic() < deadline, "posts still refused 3 s after `device enable`"
        time.sleep(0.2)

    gone = parkctl("device", "delete", "--idp", ext.idp_url, "--", device.client_id, env=ext.env)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert ext.operator.devices() == []
    assert ext.board_token(device.client_id, new_secret).status_code in (400, 401)
    if kind == "auth0":
        assert _device_clients(ext) == 0


def test_register_json_and_rotate_on_auth0(auth0: External) -> None:
    """`device register --idp --json` prints the external client_id and the one-time secret;
    `rotate-secret --idp` rotates it at Auth0 (the old one stops working)."""
    made = parkctl("device", "register", "--lot", "north", "--name", "r-1", "--idp",
                   auth0.idp_url, "--json", env=auth0.env)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    device = json.loads(made.stdout)
    assert device["issuer"] == auth0.issuer and len(device["client_secret"]) >= 43
    assert auth0.board_token(device["client_id"], device["client_secret"]).status_code == 200
    # An issuer the service does not trust: refused before anything is made anywhere.
    stranger = parkctl("device", "register", "--lot", "north", "--name", "r-2", "--idp",
                       "auth0://127.0.0.1:9", env=auth0.env)  # fmt: skip
    assert stranger.returncode == 1
    assert "the service does not trust https://127.0.0.1:9/" in stranger.stderr
    listed = parkctl("device", "list", "--json", env=auth0.env)
    assert json.loads(listed.stdout)[0]["issuer"] == auth0.issuer
    rotated = parkctl("device", "rotate-secret", device["client_id"], "--idp", auth0.idp_url,
                      "--json", env=auth0.env)  # fmt: skip
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    secret = json.loads(rotated.stdout)["client_secret"]
    assert auth0.board_token(device["client_id"], secret).status_code == 200
    assert auth0.board_token(device["client_id"], device["client_secret"]).status_code == 401
    assert device["client_secret"] not in auth0.operator.service.log()


def test_rate_limit_is_waited_out(auth0: External) -> None:
    """Over the Management API budget: one 429, a wait until x-ratelimit-reset, then success;
    never a stream of retries."""
    assert isinstance(auth0.server, Auth0Double)
    auth0.server.rate_limit(1, window_s=3.0)
    started = time.monotonic()
    made = parkctl("device", "register", "--lot", "north", "--name", "slow", "--idp",
                   auth0.idp_url, "--json", env=auth0.env)  # fmt: skip
    took = time.monotonic() - started
    assert made.returncode == 0, made.stdout + made.stderr
    assert "rate limiting (429); waiting" in made.stderr
    requests = auth0.server.state()["requests"]
    assert requests["limited"] == 1  # one 429 per reset, then it waited
    assert took >= 1.0
    assert _device_clients(auth0) == 1


def test_half_made_registrations_are_undone_or_resumed(
    auth0: External, monkeypatch: pytest.MonkeyPatch
) -> None:
    """External client made, then parkfleet refuses: without a state file the client is deleted
    again; with one it is kept and the next run reuses it (no second client). A failure at the
    external server after its client was made (the grant) deletes that client too."""
    assert isinstance(auth0.server, Auth0Double)
    for key in ("PARK_IDP_CLIENT_ID", "PARK_IDP_CLIENT_SECRET", "PARK_IDP_CA_CERT",
                "PARK_CACHE_DIR"):  # fmt: skip
        monkeypatch.setenv(key, auth0.env[key])
    bad_name = "x" * 500  # parkfleet refuses it (422) after the client was made at Auth0
    with auth0.operator.admin() as registry, ExitStack() as stack:
        idp = Auth0Tenant.from_environment(auth0.server.domain)
        stack.callback(idp.close)
        both = TwoSided(registry, idp)

        with pytest.raises(ParkctlError, match="deleted again, nothing is left half-made"):
            both.register("north", bad_name, "24:0a:c4:00:30:01")
        assert _device_clients(auth0) == 0 and registry.find_by_mac("24:0a:c4:00:30:01") is None

        kept: list[str | None] = []
        with pytest.raises(ParkctlError, match="re-run the same command"):
            both.register("north", bad_name, "24:0a:c4:00:30:01", None, kept.append)
        [made_id] = [k for k in kept if k]
        assert _device_clients(auth0) == 1
        done = both.register("north", "gate-9", "24:0a:c4:00:30:01", made_id, kept.append)
        assert done.client_id == made_id and kept[-1] is None
        assert _device_clients(auth0) == 1
        assert registry.get_device(made_id).issuer == auth0.issuer

        auth0.server.fail("POST", "/api/v2/client-grants", status=503)
        with pytest.raises(ParkctlError, match="grant counts:write"):
            both.register("north", "gate-10", "24:0a:c4:00:30:02")
        assert _device_clients(auth0) == 1  # the grantless client was deleted again
        assert registry.find_by_mac("24:0a:c4:00:30:02") is None


def test_fleet_resume_makes_no_second_client(
    auth0: External, firmware: Path, tmp_path: Path
) -> None:
    """A fleet run that stops half-way (a board vanishes during the copy) resumes: the board
    keeps its Auth0 application, gets a fresh secret, and counts."""
    with ExitStack() as stack:
        boards = [
            stack.enter_context(SimBoard(
                tmp_path / f"board{i}", chip="esp32", mac=f"24:0a:c4:00:21:{i:02x}",
                fault="vanish-mid-copy" if i == 1 else None, vanish_seconds=2,
            ))
            for i in range(2)
        ]  # fmt: skip
        for i, board in enumerate(boards):
            _cars(board, 3 + i)
        manifest = tmp_path / "fleet.csv"
        manifest.write_text("port,lot,name\n" + "".join(
            f"{b.url},north,gate-{i}\n" for i, b in enumerate(boards)))  # fmt: skip
        base = ["fleet", "provision", str(manifest), "--firmware", str(firmware), "--jobs", "2",
                "--idp", auth0.idp_url, "--ca-cert", str(auth0.ca_pem), *FAST]  # fmt: skip
        first = parkctl(*base, env=auth0.env)
        assert first.returncode == 1, first.stdout + first.stderr
        assert _device_clients(auth0) == 2
        registered = {d.mac: d.client_id for d in auth0.operator.devices()}
        second = parkctl(*base, env=auth0.env)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "2/2 boards ready" in second.stdout
        assert {d.mac: d.client_id for d in auth0.operator.devices()} == registered
        assert _device_clients(auth0) == 2
        for client_id in registered.values():
            assert auth0.operator.wait_for_reading(client_id, timeout=60).reading is not None
        state = (tmp_path / "fleet.state.json").read_text()
        for board in boards:
            assert str(_config(board)["client_secret"]) not in state
        assert "external_client_id" not in state  # recorded in parkfleet: nothing pending
