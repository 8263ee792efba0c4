"""`python -m tools.simboard --dir BOARD_DIR ...`: run one simulated board until SIGTERM."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import sys
from pathlib import Path

from tools.simboard.board import Board, BoardConfig
from tools.simboard.chips import CHIPS, get_chip
from tools.simboard.flash import SIZES, parse_size
from tools.simboard.rom import Fault

FLASH_FULL_SIZE = "256KB"  # flash-full: a chip too small for any MicroPython image


def parse_mac(text: str) -> bytes:
    """`aa:bb:cc:dd:ee:ff` (or without separators) -> 6 bytes."""
    digits = text.replace(":", "").replace("-", "")
    if len(digits) != 12:
        raise ValueError(f"MAC must have 6 bytes, not {text!r}")
    return bytes.fromhex(digits)


def default_mac(board_dir: Path) -> bytes:
    """A stable MAC per board directory under Espressif's OUI 24:0A:C4."""
    digest = hashlib.sha256(str(board_dir.resolve()).encode()).digest()
    return bytes.fromhex("240ac4") + digest[:3]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.simboard",
        description="A simulated ESP32 on a socket:// port: ROM bootloader for esptool, "
        "MicroPython (Unix port) for mpremote.",
    )
    parser.add_argument("--dir", required=True, type=Path, help="board directory")
    parser.add_argument("--chip", default="esp32", choices=sorted(CHIPS))
    parser.add_argument("--mac", type=parse_mac, help="factory MAC (default: derived from --dir)")
    parser.add_argument("--flash-size", default="4MB", choices=list(SIZES))
    parser.add_argument("--baud-limit", type=int, help="cap the line rate at this many baud")
    parser.add_argument("--fault", choices=[f.value for f in Fault])
    parser.add_argument(
        "--vanish-seconds", type=float, default=10.0, help="how long a vanished board stays away"
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--pty", action="store_true", help="also offer the port on a pty")
    parser.add_argument("--ready-file", type=Path, help="write {url, pty, pid} here when ready")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    board_dir: Path = args.dir
    board_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=board_dir / "simboard.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    fault = Fault(args.fault) if args.fault else None
    flash_size = FLASH_FULL_SIZE if fault is Fault.FLASH_FULL else args.flash_size
    board = Board(
        BoardConfig(
            board_dir=board_dir,
            chip=get_chip(args.chip),
            mac=args.mac or default_mac(board_dir),
            flash_size=parse_size(flash_size),
            baud_limit=args.baud_limit,
            fault=fault,
            vanish_seconds=args.vanish_seconds,
            port=args.port,
            pty=args.pty,
        )
    )
    signal.signal(signal.SIGTERM, lambda *_: board.stop())
    signal.signal(signal.SIGINT, lambda *_: board.stop())
    board.start()
    if args.ready_file:
        ready = {
            "url": board.url,
            "pty": board.pty_path,
            "pid": os.getpid(),
            "mac": board.config.mac.hex(":"),
        }
        tmp = args.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(ready))
        tmp.replace(args.ready_file)
    else:
        print(board.url, flush=True)
    board.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
