"""`python -m tools.simboard.bench`: how fast the real esptool writes through the simulator.

Writes a MicroPython-sized image (1.6 MB, deflating to ~60 % like real firmware) with the default
stub at several line rates, `--baud-limit` pacing the simulated UART, and prints esptool's own
timing: seconds, effective kbit/s (uncompressed) and KB/s on the wire.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.simboard import SimBoard, make_firmware_image
from tools.simboard.repl import REPO

_WROTE = re.compile(r"Wrote (\d+) bytes \((\d+) compressed\) at \S+ in ([\d.]+) seconds")


def measure(work: Path, image: Path, baud: int, limit: int | None) -> tuple[float, int, int, float]:
    """(total seconds, uncompressed bytes, compressed bytes, esptool's write seconds)."""
    with SimBoard(work / f"board-{baud}-{limit}", baud_limit=limit) as board:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "esptool", "--port", board.url, "--baud", str(baud),
             "write-flash", "0x1000", str(image)],
            capture_output=True, text=True, cwd=REPO, check=False,
        )  # fmt: skip
        total = time.monotonic() - started
    found = _WROTE.search(done.stdout)
    if done.returncode or not found:
        raise RuntimeError(done.stdout + done.stderr)
    return total, int(found[1]), int(found[2]), float(found[3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_600_000, help="image size in bytes")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        image = work / "fw.bin"
        make_firmware_image(image, chip="esp32", size=args.size)
        print(
            f"{'line rate':>12} {'esptool total':>14} {'write':>8} {'kbit/s':>8} {'wire KB/s':>10}"
        )
        for baud, limit in ((115200, 115200), (460800, 460800), (921600, 921600), (921600, None)):
            total, plain, packed, secs = measure(work, image, baud, limit)
            label = f"{limit} Bd" if limit else "unlimited"
            print(
                f"{label:>12} {total:>13.1f}s {secs:>7.1f}s {plain * 8 / secs / 1000:>8.0f}"
                f" {packed / secs / 1000:>10.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
