"""The ESP serial bootloader protocol: ROM loader and flasher stub, as esptool speaks them.

A request frame is `<BBHI` (direction 0, opcode, data length, checksum) + data; the answer is
`<BBHI` (direction 1, same opcode, body length, value) + body, where the body ends in status bytes
(0 = success, else an error code). The ROM sends 4 status bytes on ESP32 and 2 on later chips,
the stub 2; ROM errors read as 0x01 + reason, stub errors as one reason byte + 0x00 — esptool's
`FatalError.WithResult` decodes both (see the "Serial Protocol" page of the esptool docs).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import Enum

from tools.simboard.chips import Chip, Registers, security_info
from tools.simboard.flash import Flash

SYNC = 0x08
SYNC_PAYLOAD = b"\x07\x07\x12\x20" + b"\x55" * 32
CHECKSUM_SEED = 0xEF  # ESPLoader.ESP_CHECKSUM_MAGIC

# ROM reasons (status byte 1) and stub reasons (status byte = reason).
ROM_INVALID_MESSAGE = 0x05
ROM_FAILED = 0x06
ROM_BAD_CHECKSUM = 0x07
ROM_FLASH_WRITE_ERROR = 0x08
ROM_DEFLATE_ERROR = 0x0B
STUB_BAD_DATA_LEN = 0xC0
STUB_BAD_CHECKSUM = 0xC1
STUB_NOT_IN_FLASH_MODE = 0xC6
STUB_INFLATE_ERROR = 0xC7
STUB_NOT_ENOUGH_DATA = 0xC8
STUB_TOO_MUCH_DATA = 0xC9
STUB_NOT_IMPLEMENTED = 0xFF


class Action(Enum):
    """What the board must do after answering a frame."""

    RUN_APP = "run-app"  # leave the loader and boot from flash
    STAY = "stay"  # stay in the loader when the host goes away (esptool --after no-reset)
    VANISH = "vanish"  # fault injection: drop off the bus without answering


class Fault(Enum):
    """Injectable faults (`--fault`); see README.md for what each looks like to the host."""

    NO_SYNC = "no-sync"
    WRONG_MAGIC = "wrong-magic"
    MD5_MISMATCH = "md5-mismatch"
    VANISH_MID_FLASH = "vanish-mid-flash"
    VANISH_MID_COPY = "vanish-mid-copy"
    FLASH_FULL = "flash-full"


class LoaderError(Exception):
    """A request the loader refuses; the ROM or stub reason goes into the status bytes."""

    def __init__(self, rom_reason: int, stub_reason: int) -> None:
        super().__init__(f"loader error {rom_reason:#x}/{stub_reason:#x}")
        self.rom_reason = rom_reason
        self.stub_reason = stub_reason


def checksum(data: bytes) -> int:
    """XOR of all bytes seeded with 0xEF, as the ROM checks FLASH_DATA and MEM_DATA blocks."""
    value = int.from_bytes(data, "little")
    width = 1 << max(0, len(data) - 1).bit_length()  # zero padding to a power of two: XOR-neutral
    # Fold the integer in halves so the XOR runs in C, not byte by byte in Python.
    while width > 1:
        width //= 2
        value = (value & ((1 << (8 * width)) - 1)) ^ (value >> (8 * width))
    return (value & 0xFF) ^ CHECKSUM_SEED


# What a command handler returns: (value, body, extra frames), or None to send nothing.
_Result = tuple[int, bytes, list[bytes]] | None


@dataclass
class _Download:
    """State between FLASH_(DEFL_)BEGIN and FLASH_(DEFL_)END, or MEM_BEGIN and MEM_END."""

    offset: int
    size: int  # bytes expected (uncompressed) for the stub, erase size for the ROM
    blocks: int
    block_size: int
    compressed: bool
    written: int = 0
    next_seq: int = 0
    inflater: zlib._Decompress | None = None


class Loader:
    """One bootloader session: starts as the ROM, becomes the stub once esptool uploads it.

    `handle()` takes one request frame and returns the response frames; afterwards `action`
    says whether the board must boot the app, stay in the loader, or vanish.
    """

    def __init__(self, chip: Chip, flash: Flash, regs: Registers, fault: Fault | None) -> None:
        self.chip = chip
        self.flash = flash
        self.regs = regs
        self.fault = fault
        self.stub = False
        self.action: Action | None = None
        self._download: _Download | None = None
        self._mem: _Download | None = None
        self._handlers = {
            0x02: self._flash_begin,
            0x03: self._flash_data,
            0x04: self._flash_end,
            0x05: self._mem_begin,
            0x06: self._mem_end,
            0x07: self._mem_data,
            0x09: self._write_reg,
            0x0A: self._read_reg,
            0x0B: self._ack,  # SPI_SET_PARAMS: geometry is known already
            0x0D: self._ack,  # SPI_ATTACH
            0x0E: self._read_flash_slow,
            0x0F: self._change_baudrate,
            0x10: self._flash_defl_begin,
            0x11: self._flash_defl_data,
            0x12: self._flash_end,
            0x13: self._flash_md5,
            0x14: self._get_security_info,
            0xD0: self._erase_flash,
            0xD1: self._erase_region,
            0xD2: self._read_flash,
            0xD3: self._run_user_code,
        }

    # -- framing -----------------------------------------------------------------------------

    def handle(self, frame: bytes) -> list[bytes]:
        self.action = None
        if len(frame) < 8 or frame[0] != 0x00:
            return []  # not a request (e.g. a READ_FLASH acknowledgement): ignored
        _, op, length, chk = struct.unpack_from("<BBHI", frame)
        data = frame[8 : 8 + length]
        if self.fault is Fault.NO_SYNC:
            return []
        if op == SYNC:
            return self._sync(data)
        handler = self._handlers.get(op)
        if handler is None or (op >= 0xD0 and not self.stub):
            return [self._error(op, ROM_INVALID_MESSAGE, STUB_NOT_IMPLEMENTED)]
        try:
            result = handler(data, chk)
        except LoaderError as err:
            return [self._error(op, err.rom_reason, err.stub_reason)]
        except struct.error:
            return [self._error(op, ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN)]
        if result is None:
            return []
        value, body, extra = result
        return [self._response(op, value, body), *extra]

    def _response(self, op: int, value: int = 0, body: bytes = b"") -> bytes:
        status = b"\x00" * (2 if self.stub else self.chip.rom_status_len)
        body += status
        return struct.pack("<BBHI", 1, op, len(body), value) + body

    def _error(self, op: int, rom_reason: int, stub_reason: int) -> bytes:
        if self.stub:
            status = bytes([stub_reason, 0])
        else:
            status = bytes([1, rom_reason]) + b"\x00" * (self.chip.rom_status_len - 2)
        return struct.pack("<BBHI", 1, op, len(status), 0) + status

    # -- commands: each returns (value, body, extra frames), or None for "send nothing" ----------

    def _sync(self, data: bytes) -> list[bytes]:
        if data != SYNC_PAYLOAD:
            return []
        # The ROM answers SYNC eight times (esptool reads the seven extras); the stub's value is
        # 0, which tells esptool a stub is already running.
        value = 0 if self.stub else 0x20120707
        return [self._response(SYNC, value)] * 8

    def _ack(self, data: bytes, chk: int) -> _Result:
        return 0, b"", []

    def _read_reg(self, data: bytes, chk: int) -> _Result:
        (addr,) = struct.unpack_from("<I", data)
        return self.regs.read(addr), b"", []

    def _write_reg(self, data: bytes, chk: int) -> _Result:
        for pos in range(0, len(data) - 15, 16):
            addr, value, mask, _delay = struct.unpack_from("<IIII", data, pos)
            self.regs.write(addr, value, mask)
        return 0, b"", []

    def _get_security_info(self, data: bytes, chk: int) -> _Result:
        if not self.chip.security_info or self.fault is Fault.WRONG_MAGIC:
            raise LoaderError(ROM_INVALID_MESSAGE, STUB_NOT_IMPLEMENTED)
        return 0, security_info(self.chip), []

    def _change_baudrate(self, data: bytes, chk: int) -> _Result:
        (new_baud,) = struct.unpack_from("<I", data)
        # The answer still goes out at the old rate; the board switches after sending it.
        self.regs.baud = new_baud
        return 0, b"", []

    def _mem_begin(self, data: bytes, chk: int) -> _Result:
        size, blocks, block_size, offset = struct.unpack_from("<IIII", data)
        self._mem = _Download(offset, size, blocks, block_size, compressed=False)
        return 0, b"", []

    def _mem_data(self, data: bytes, chk: int) -> _Result:
        if self._mem is None:
            raise LoaderError(ROM_FAILED, STUB_NOT_IN_FLASH_MODE)
        block = self._block(self._mem, data, chk)
        self._mem.written += len(block)
        return 0, b"", []

    def _mem_end(self, data: bytes, chk: int) -> _Result:
        no_entry, entry = struct.unpack_from("<II", data)
        if no_entry or entry == 0 or self.stub:
            return 0, b"", []
        # The ROM jumps to the uploaded stub, which greets with "OHAI" (esptool run_stub()).
        self.stub = True
        self._mem = None
        return 0, b"", [b"OHAI"]

    def _flash_begin(self, data: bytes, chk: int) -> _Result:
        erase_size, blocks, block_size, offset = struct.unpack_from("<IIII", data)
        self._begin(_Download(offset, erase_size, blocks, block_size, compressed=False))
        return 0, b"", []

    def _flash_defl_begin(self, data: bytes, chk: int) -> _Result:
        size, blocks, block_size, offset = struct.unpack_from("<IIII", data)
        download = _Download(offset, size, blocks, block_size, compressed=True)
        download.inflater = zlib.decompressobj()
        self._begin(download)
        return 0, b"", []

    def _begin(self, download: _Download) -> None:
        if not self.flash.contains(download.offset, download.size):
            raise LoaderError(ROM_FLASH_WRITE_ERROR, STUB_TOO_MUCH_DATA)
        # Both the ROM and the stub erase the region before programming (the stub lazily).
        self.flash.erase(download.offset, download.size)
        self._download = download if download.size else None

    def _flash_data(self, data: bytes, chk: int) -> _Result:
        download = self._flash_download(compressed=False)
        block = self._block(download, data, chk)
        if self._vanish_now(download):
            return None
        start = download.offset + download.written
        # The host pads the last block with 0xFF; at the very end of flash that padding is cut.
        self.flash.write(start, block[: max(0, self.flash.size - start)])
        download.written += len(block)
        return 0, b"", []

    def _flash_defl_data(self, data: bytes, chk: int) -> _Result:
        download = self._flash_download(compressed=True)
        block = self._block(download, data, chk)
        if self._vanish_now(download):
            return None
        assert download.inflater is not None
        try:
            plain = download.inflater.decompress(block)
        except zlib.error:
            raise LoaderError(ROM_DEFLATE_ERROR, STUB_INFLATE_ERROR) from None
        if download.written + len(plain) > download.size:
            raise LoaderError(ROM_FLASH_WRITE_ERROR, STUB_TOO_MUCH_DATA)
        self.flash.write(download.offset + download.written, plain)
        download.written += len(plain)
        return 0, b"", []

    def _flash_download(self, compressed: bool) -> _Download:
        if self._download is None or self._download.compressed != compressed:
            raise LoaderError(ROM_FAILED, STUB_NOT_IN_FLASH_MODE)
        return self._download

    def _block(self, download: _Download, data: bytes, chk: int) -> bytes:
        length, seq, _, _ = struct.unpack_from("<IIII", data)
        block = data[16:]
        if len(block) != length:
            raise LoaderError(ROM_INVALID_MESSAGE, STUB_BAD_DATA_LEN)
        if checksum(block) != chk & 0xFF:
            raise LoaderError(ROM_BAD_CHECKSUM, STUB_BAD_CHECKSUM)
        if seq != download.next_seq:
            raise LoaderError(ROM_FAILED, STUB_BAD_DATA_LEN)
        download.next_seq += 1
        return block

    def _vanish_now(self, download: _Download) -> bool:
        """vanish-mid-flash: drop off halfway through the first flash write."""
        if self.fault is Fault.VANISH_MID_FLASH and download.next_seq > max(
            1, download.blocks // 2
        ):
            self.action = Action.VANISH
            return True
        return False

    def _flash_end(self, data: bytes, chk: int) -> _Result:
        (run_user_code,) = struct.unpack_from("<I", data) if data else (1,)
        download, self._download = self._download, None
        if download and self.stub and download.compressed and download.written < download.size:
            raise LoaderError(ROM_FAILED, STUB_NOT_ENOUGH_DATA)
        if not run_user_code:
            # esptool's "stay in bootloader" (stub soft_reset(True)): back to the ROM loader.
            self.stub = False
            self.action = Action.STAY
        elif not self.stub:
            # The ROM leaves the loader and runs the app (esptool run, --after soft-reset); the
            # stub only acknowledges, it runs user code on RUN_USER_CODE.
            self.action = Action.RUN_APP
        return 0, b"", []

    def _run_user_code(self, data: bytes, chk: int) -> _Result:
        """Stub RUN_USER_CODE: no answer, the stub returns into the ROM's normal boot."""
        self.action = Action.RUN_APP
        return None

    def _flash_md5(self, data: bytes, chk: int) -> _Result:
        addr, size, _, _ = struct.unpack_from("<IIII", data)
        if not self.flash.contains(addr, size):
            raise LoaderError(ROM_FAILED, STUB_BAD_DATA_LEN)
        digest = self.flash.md5(addr, size)
        if self.fault is Fault.MD5_MISMATCH:
            digest = bytes([digest[0] ^ 0xFF]) + digest[1:]
        # The ROM answers in lower-case hex text, the stub in raw bytes.
        return 0, digest if self.stub else digest.hex().encode(), []

    def _erase_flash(self, data: bytes, chk: int) -> _Result:
        self.flash.erase_all()
        return 0, b"", []

    def _erase_region(self, data: bytes, chk: int) -> _Result:
        offset, size = struct.unpack_from("<II", data)
        if not self.flash.contains(offset, size):
            raise LoaderError(ROM_FAILED, STUB_BAD_DATA_LEN)
        self.flash.erase(offset, size)
        return 0, b"", []

    def _read_flash_slow(self, data: bytes, chk: int) -> _Result:
        offset, length = struct.unpack_from("<II", data)
        if length > 64 or not self.flash.contains(offset, length):
            raise LoaderError(ROM_FAILED, STUB_BAD_DATA_LEN)
        return 0, self.flash.read(offset, length).ljust(64, b"\xff"), []

    def _read_flash(self, data: bytes, chk: int) -> _Result:
        """Stub READ_FLASH: data packets then the MD5 of all of them (esptool read_flash())."""
        offset, length, packet_size, _max_unacked = struct.unpack_from("<IIII", data)
        if not self.flash.contains(offset, length) or packet_size == 0:
            raise LoaderError(ROM_FAILED, STUB_BAD_DATA_LEN)
        content = self.flash.read(offset, length)
        # The stub paces packets by the host's acknowledgements; the board's socket buffers
        # stand in for that window, and handle() ignores the acknowledgement frames.
        packets = [content[pos : pos + packet_size] for pos in range(0, length, packet_size)]
        return 0, b"", [*packets, self.flash.md5(offset, length)]
