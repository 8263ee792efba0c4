"""SLIP framing (RFC 1055) as used by the ESP ROM bootloader and its flasher stub.

Every command and response travels in one frame: 0xC0, payload with 0xC0 and 0xDB escaped as
0xDB 0xDC and 0xDB 0xDD, 0xC0 (RFC 1055, "SLIP DRIVER FUNCTIONS").
"""

from __future__ import annotations


def encode(payload: bytes) -> bytes:
    """One SLIP frame around `payload`."""
    escaped = payload.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
    return b"\xc0" + escaped + b"\xc0"


class SlipDecoder:
    """Incremental decoder: feed raw serial bytes, get back complete frames.

    Bytes outside a frame are dropped, as the ROM does with line noise; an empty frame (two END
    bytes in a row, which RFC 1055 recommends senders use to flush noise) is not reported.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._in_frame = False

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        self._buf += data
        while True:
            if not self._in_frame:
                start = self._buf.find(b"\xc0")
                if start < 0:
                    self._buf.clear()
                    break
                del self._buf[: start + 1]
                self._in_frame = True
            end = self._buf.find(b"\xc0")
            if end < 0:
                break
            raw = bytes(self._buf[:end])
            del self._buf[: end + 1]
            # An END both closes a frame and may open the next one, so stay in frame.
            if raw:
                frames.append(decode(raw))
        return frames

    def reset(self) -> None:
        self._buf.clear()
        self._in_frame = False


def decode(raw: bytes) -> bytes:
    """Undo the escaping of one frame's payload (without its END bytes)."""
    # Every 0xDB in an encoded stream leads an escape pair, so left-to-right replacement is exact.
    return raw.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
