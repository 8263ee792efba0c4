"""`python -m tools.simboard.mkfirmware OUT.bin [CHIP]`: the firmware a simulated board takes
(`parkctl provision --firmware`). A real board takes MicroPython's own image for its chip
(ESP32_GENERIC from micropython.org); this one only boots on tools/simboard."""

from __future__ import annotations

import sys

from tools.simboard.image import make_firmware_image


def main() -> None:
    """Write a simulated MicroPython image for CHIP (default esp32) to OUT.bin."""
    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: python -m tools.simboard.mkfirmware OUT.bin [CHIP]")
    chip = sys.argv[2] if len(sys.argv) == 3 else "esp32"
    data = make_firmware_image(sys.argv[1], chip=chip, size=256 * 1024)
    print(f"{sys.argv[1]}: a simulated {chip} MicroPython image, {len(data)} bytes")


if __name__ == "__main__":
    main()
