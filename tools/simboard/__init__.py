"""A simulated ESP32 board: the ROM serial bootloader for esptool, MicroPython for mpremote.

    from tools.simboard import SimBoard, make_firmware_image

    with SimBoard(tmp_path / "board", chip="esp32") as board:
        make_firmware_image(tmp_path / "fw.bin", chip="esp32")
        ...  # esptool --port board.url write-flash 0x1000 fw.bin; mpremote connect board.url ...

See README.md in this directory for the behaviour and the fault injections.
"""

from tools.simboard.harness import SimBoard
from tools.simboard.image import make_firmware_image, parse_image

__all__ = ["SimBoard", "make_firmware_image", "parse_image"]
