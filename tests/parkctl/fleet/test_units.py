"""The fleet tool's pure parts: firmware checks, config.json, manifest, resumable state."""

from __future__ import annotations

import json
import stat
import struct
import threading
from pathlib import Path

import pytest

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.fleet.config import Network, board_config, pem_to_der, staged_config
from provisioning.parkctl.fleet.image import check_compatible, flash_offset, load_firmware
from provisioning.parkctl.fleet.manifest import read_manifest
from provisioning.parkctl.fleet.state import FleetState, default_state_path
from tools.harness.pki import make_pki


def esp_image(chip_id: int = 0, banner: bytes = b"MicroPython v1.24.1", size: int = 4096) -> bytes:
    """A minimal ESP app image header (magic, 1 segment, ext header with `chip_id`) + payload."""
    header = struct.pack("<BBBBI", 0xE9, 1, 2, 0x20, 0x40080000)
    extended = struct.pack("<B3sHBHH4sB", 0xEE, b"\0\0\0", chip_id, 0, 0, 0xFFFF, b"\0" * 4, 0)
    body = header + extended + banner
    return body + b"\xff" * (size - len(body))


def test_firmware_checks(tmp_path: Path) -> None:
    good = tmp_path / "esp32.bin"
    good.write_bytes(esp_image(0))
    image = load_firmware(good)
    assert (image.chip, image.size) == ("esp32", 4096)
    assert check_compatible(image, "esp32", 4 << 20) == 0x1000

    s3 = tmp_path / "s3.bin"
    s3.write_bytes(esp_image(9))
    assert load_firmware(s3).chip == "esp32s3"
    assert flash_offset("esp32s3") == 0 and flash_offset("esp32c3") == 0

    with pytest.raises(ParkctlError, match=r"wrong chip.*ESP32-S3.*ESP32"):
        check_compatible(load_firmware(s3), "esp32", 4 << 20)
    with pytest.raises(ParkctlError, match="flash full"):
        check_compatible(image, "esp32", 4096)

    not_mp = tmp_path / "idf-app.bin"
    not_mp.write_bytes(esp_image(0, banner=b"hello_world app"))
    with pytest.raises(ParkctlError, match="not MicroPython"):
        load_firmware(not_mp)
    text = tmp_path / "notes.bin"
    text.write_bytes(b"MicroPython is great" * 10)
    with pytest.raises(ParkctlError, match="not an ESP firmware image"):
        load_firmware(text)
    with pytest.raises(ParkctlError, match="does not exist"):
        load_firmware(tmp_path / "missing.bin")


def test_config_json_private_and_gone(tmp_path: Path) -> None:
    pem = make_pki(tmp_path / "pki").ca_pem.read_bytes()
    network = Network(
        "https://s/oauth/token", "https://s/v1/counts", "lotnet", "wifi-pw", ca_cert_pem=pem
    )
    assert "wifi-pw" not in repr(network)
    config = board_config(network, "dev-1", "s3cret", "north")
    assert config["audience"] == "parkfleet-ingest"
    assert config["ca_cert"] == "ca.der"
    assert config["sensor"] == {"kind": "file", "path": "cars.txt"}
    with staged_config(config, pem) as stage:
        path = stage / "config.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(stage.stat().st_mode) == 0o700
        assert json.loads(path.read_text())["client_secret"] == "s3cret"
        der = (stage / "ca.der").read_bytes()
        assert der == pem_to_der(pem) and der[0] == 0x30  # DER SEQUENCE
    assert not stage.exists()
    with pytest.raises(ParkctlError, match="not a PEM"):
        pem_to_der(b"junk")


def test_manifest(tmp_path: Path) -> None:
    path = tmp_path / "fleet.csv"
    path.write_text(
        "\ufeffport,lot,name,wifi_ssid\n"
        "# comment\n"
        "socket://127.0.0.1:5001,north,gate-1,\n"
        "/dev/ttyUSB0,south,,south-net\n"
    )
    rows = read_manifest(path)
    assert [(r.port, r.lot, r.name, r.wifi_ssid) for r in rows] == [
        ("socket://127.0.0.1:5001", "north", "gate-1", None),
        ("/dev/ttyUSB0", "south", "south-ttyUSB0", "south-net"),
    ]
    path.write_text("port,lot\nA,north\nA,south\n")
    with pytest.raises(ParkctlError, match="already on line 2"):
        read_manifest(path)
    path.write_text("port,lot\nA,no/slash\n")
    with pytest.raises(ParkctlError, match=r"fleet.csv:2: lot may contain"):
        read_manifest(path)
    path.write_text("port,name\nA,x\n")
    with pytest.raises(ParkctlError, match=r"missing column.*lot"):
        read_manifest(path)


def test_state_resumable_atomic(tmp_path: Path) -> None:
    path = default_state_path(tmp_path / "fleet.csv")
    assert path.name == "fleet.state.json"
    state = FleetState(path)
    state.bind("p1", "aa:bb:cc:00:00:01")
    state.finish("p1", "register", client_id="dev-1")
    state.finish("p1", "flash", firmware="abc")
    state.fail("p1", "install", "board vanished")

    again = FleetState(path)
    assert again.done("p1") == ["register", "flash"]
    assert again.record("p1")["failed"] == {"step": "install", "reason": "board vanished"}
    assert again.done("p1", mac="aa:bb:cc:00:00:02") == []  # another board on that port
    again.bind("p1", "aa:bb:cc:00:00:02")
    assert FleetState(path).done("p1") == []

    # Many threads finishing steps at once leave a valid file with every record.
    threads = [
        threading.Thread(
            target=state.finish, args=(f"port{i}", "register"), kwargs={"client_id": f"d{i}"}
        )
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    boards = json.loads(path.read_text())["boards"]
    assert all(boards[f"port{i}"]["client_id"] == f"d{i}" for i in range(20))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("fleet.state.json.")]

    path.write_text("{not json")
    with pytest.raises(ParkctlError, match="unreadable"):
        FleetState(path)


@pytest.mark.parametrize(
    ("port", "lines"),
    [
        ("/dev/ttyUSB0", True),
        ("socket://127.0.0.1:5000", False),
        ("rfc2217://bench:4000", False),
        ("/dev/pts/7", False),
    ],
)
def test_reset_lines_only_on_real_serial_ports(port: str, lines: bool) -> None:
    from provisioning.parkctl.fleet.esp import has_reset_lines

    assert has_reset_lines(port) is lines


def test_full_board_filesystem_is_named_as_such() -> None:
    from provisioning.parkctl.fleet.files import _explain

    output = "cp device/agent.py :agent.py\nOSError: No space left on device.\n"
    assert "filesystem is full" in _explain("socket://x:1", output).message


def test_board_with_other_mpy_version_is_refused_in_one_line() -> None:
    from provisioning.parkctl.release.mpy import check_board_mpy, compiler_mpy_version

    version, sub = compiler_mpy_version()
    check_board_mpy("socket://x:1", version | (sub << 8) | (2 << 10))  # same version: fine
    check_board_mpy("socket://x:1", version | (2 << 10))  # sub-version: native code only
    with pytest.raises(ParkctlError) as refused:
        check_board_mpy("socket://x:1", (version - 1) | (1 << 8))
    message = refused.value.message
    assert "\n" not in message
    assert f"v{version - 1}.1" in message and f"v{version}.{sub}" in message
    with pytest.raises(ParkctlError, match=r"cannot import \.mpy"):
        check_board_mpy("socket://x:1", None)


def test_bundle_is_the_agent_as_mpy_but_main() -> None:
    from provisioning.common.bundle import install_plan
    from provisioning.parkctl.release.mpy import DEVICE_DIR, agent_bundle

    names = [name for _, name in agent_bundle()]
    modules = sorted(p.stem for p in DEVICE_DIR.glob("*.py"))
    assert names == sorted(["main.py", *(m + ".mpy" for m in modules if m != "main")])
    plan = install_plan(None)
    boot = sorted(name for _, name in plan.files if "/" not in name)
    assert boot == [
        "appdir.mpy",
        "flash.mpy",
        "main.py",
        "trial.mpy",
    ]  # the boot stub, never updated over the air
    assert len(plan.files) == len(names) and plan.release_key is None
    for src, name in agent_bundle():
        if name.endswith(".mpy"):
            assert src.read_bytes()[:2] == b"M\x06"  # an .mpy header, bytecode v6
