"""The real mpremote against the simulated board's MicroPython mode, and both tools on one port."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.tools.simboard.conftest import esptool, mpremote
from tools.simboard import SimBoard, make_firmware_image

APP_OFFSET = 0x1000  # ESP32


def flashed(board: SimBoard) -> SimBoard:
    """Put a valid MicroPython-like image in the board's flash, as if flashed on the bench."""
    image = make_firmware_image(None, chip="esp32", size=32 * 1024)
    with board.flash_path.open("r+b") as f:
        f.seek(APP_OFFSET)
        f.write(image)
    return board


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_flash_then_install_over_one_port(
    board_factory: Callable[..., SimBoard], tmp_path: Path
) -> None:
    board = board_factory(mac="24:0a:c4:00:00:42")
    assert board.state()["mode"] == "bootloader"  # blank flash: nothing to boot
    make_firmware_image(tmp_path / "fw.bin", chip="esp32", size=64 * 1024)
    done = esptool(board.url, "write-flash", hex(APP_OFFSET), str(tmp_path / "fw.bin"))
    assert done.returncode == 0, done.stdout + done.stderr
    board.wait_for_mode("micropython")  # esptool's hard reset: the board boots the new image

    (tmp_path / "main.py").write_text("import machine\nprint('agent up', machine.unique_id())\n")
    done = mpremote(board.url, "fs", "cp", str(tmp_path / "main.py"), ":main.py", "+", "reset")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (board.fs_dir / "main.py").read_text() == (tmp_path / "main.py").read_text()
    # After the reset the board runs main.py with the shim's machine module and its own MAC.
    wait_for(lambda: "agent up b'$\\n\\xc4\\x00\\x00B'" in board.console())
    assert "rst:0xc (SW_CPU_RESET)" in board.console()


def test_fs_cp_ls_exec_and_resets(board_factory: Callable[..., SimBoard], tmp_path: Path) -> None:
    board = flashed(board_factory())
    board.stop()
    board.start()  # power on with an image in flash
    board.wait_for_mode("micropython")
    (tmp_path / "data.txt").write_bytes(bytes(range(256)) * 8)
    done = mpremote(
        board.url,
        "fs", "mkdir", ":lib", "+",
        "fs", "cp", str(tmp_path / "data.txt"), ":lib/data.txt", "+",
        "fs", "ls", ":lib", "+",
        "exec", "import os; print('size', os.stat('lib/data.txt')[6])",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "data.txt" in done.stdout
    assert "size 2048" in done.stdout
    assert (board.fs_dir / "lib" / "data.txt").read_bytes() == (tmp_path / "data.txt").read_bytes()

    done = mpremote(board.url, "soft-reset")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MPY: soft reboot" in board.console()
    pid = board.state()["app_pid"]
    done = mpremote(board.url, "reset")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: board.state()["app_pid"] not in (pid, None))


def test_boot_runs_boot_then_main_and_ctrl_c_interrupts(
    board_factory: Callable[..., SimBoard],
) -> None:
    board = flashed(board_factory())
    board.stop()
    (board.fs_dir / "boot.py").write_text("print('boot.py ran')\n")
    (board.fs_dir / "main.py").write_text(
        "import time\nprint('main.py ran')\nwhile True:\n    time.sleep(0.05)\n"
    )
    board.start()
    wait_for(lambda: "main.py ran" in board.console())
    assert board.console().index("boot.py ran") < board.console().index("main.py ran")
    # mpremote interrupts the endless main.py with Ctrl-C, as on a board.
    done = mpremote(board.url, "exec", "print('after', 6 * 7)")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "after 42" in done.stdout
    assert "KeyboardInterrupt" in board.console()
    # A soft reset from mpremote's raw REPL runs boot.py again but not main.py (ESP32 main.c).
    assert board.console().count("boot.py ran") == 2
    assert board.console().count("main.py ran") == 1


def test_vanish_mid_copy_then_back(board_factory: Callable[..., SimBoard], tmp_path: Path) -> None:
    board = flashed(board_factory(fault="vanish-mid-copy", vanish_seconds=1.0))
    board.stop()
    board.start()
    board.wait_for_mode("micropython")
    (tmp_path / "big.bin").write_bytes(b"x" * 8192)
    done = mpremote(board.url, "fs", "cp", str(tmp_path / "big.bin"), ":big.bin", timeout=30)
    assert done.returncode != 0
    assert board.state()["mode"] == "unplugged"
    board.wait_for_mode("micropython")  # replugged: one-shot fault, powers on again
    done = mpremote(board.url, "fs", "cp", str(tmp_path / "big.bin"), ":big.bin")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (board.fs_dir / "big.bin").read_bytes() == b"x" * 8192


def test_flash_full_filesystem_refuses_writes(
    board_factory: Callable[..., SimBoard], tmp_path: Path
) -> None:
    board = board_factory(fault="flash-full")
    image = make_firmware_image(None, chip="esp32", size=32 * 1024)
    with board.flash_path.open("r+b") as f:
        f.seek(APP_OFFSET)
        f.write(image)
    board.stop()
    board.start()
    board.wait_for_mode("micropython")
    (tmp_path / "a.py").write_text("x = 1\n")
    done = mpremote(board.url, "fs", "cp", str(tmp_path / "a.py"), ":a.py")
    assert done.returncode != 0
    assert "No space left on device" in done.stderr


def test_exit_from_main_reboots_like_a_board(board_factory: Callable[..., SimBoard]) -> None:
    board = flashed(board_factory())
    board.stop()
    # main.py resets the board once (a marker file remembers), then stays in its loop.
    (board.fs_dir / "main.py").write_text(
        "import machine, os, time\n"
        "try:\n    os.stat('once')\nexcept OSError:\n"
        "    open('once', 'w').close()\n    print('resetting')\n    machine.reset()\n"
        "print('second boot', machine.reset_cause())\n"
        "while True:\n    time.sleep(0.05)\n"
    )
    board.start()
    wait_for(lambda: "second boot" in board.console())
    console = board.console()
    assert console.index("resetting") < console.index("rst:0xc (SW_CPU_RESET)")
    assert "second boot 5" in console  # machine.SOFT_RESET, as machine.reset() gives on ESP32


def test_same_board_on_a_pty(board_factory: Callable[..., SimBoard], tmp_path: Path) -> None:
    board = board_factory(pty=True)
    assert board.pty and board.pty.startswith("/dev/pts/")
    make_firmware_image(tmp_path / "fw.bin", chip="esp32", size=32 * 1024)
    # A pty has no DTR/RTS: esptool connects without its reset sequence.
    done = esptool(
        board.pty, "--before", "no-reset", "write-flash", "0x1000", str(tmp_path / "fw.bin")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    board.wait_for_mode("micropython")
    done = mpremote(board.pty, "exec", "print('on the pty', 7 * 6)")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "on the pty 42" in done.stdout


def test_board_reports_the_mpy_version_parkctl_builds_and_runs_the_bundle(
    board_factory: Callable[..., SimBoard],
) -> None:
    from provisioning.common.bundle import install_plan
    from provisioning.parkctl.fleet.files import board_files, install
    from provisioning.parkctl.release.mpy import compiler_mpy_version

    board = flashed(board_factory())
    board.stop()
    board.start()
    board.wait_for_mode("micropython")
    facts = board_files(board.url)
    assert facts.mpy is not None and facts.mpy & 0xFF == compiler_mpy_version()[0]
    bundle = [name for _, name in install_plan(None).files]
    assert install(board.url, [], reset=False) == len(bundle) + 1  # and app.json
    # The board's own MicroPython imports every shipped .mpy module (no source beside them).
    # (but start, which would run the agent)
    modules = [
        name.removesuffix(".mpy").split("/")[-1]
        for name in bundle
        if name.endswith(".mpy") and name != "app_a/start.mpy"
    ]
    code = (
        f"import sys; sys.path.insert(0, 'app_a'); import {', '.join(modules)}; "
        f"print('imported', {modules[0]}.__file__)"
    )
    done = mpremote(board.url, "exec", code)
    assert done.returncode == 0, done.stdout + done.stderr
    first = next(n for n in bundle if n.endswith(f"/{modules[0]}.mpy") or n == f"{modules[0]}.mpy")
    assert f"imported {first}" in done.stdout
