"""The rules for lot ids, board names and MACs, used by the service, the admin API's models
(`registry.schemas`), the fleet manifest and the MAC read from a board.

Plain functions without pydantic, so the board verbs of `parkctl` check a MAC without loading the
API models (start-up time, issue 15). Each returns the normalised value or raises `ValueError`
saying why.
"""

from __future__ import annotations

import re
import unicodedata

LOT_MAX = 64  # clients.lot is String(64)
NAME_MAX = 128  # clients.name is String(128)

# Lot ids become MQTT topic levels (`parkfleet/lots/<lot>/...`): '/' would add a level, '+' and
# '#' are wildcards (MQTT 5.0 §4.7.1) and may not appear in a published topic. An allow-list is
# stricter than that and also keeps ids safe in URLs, file names and log lines.
_LOT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAC_RE = re.compile(r"[0-9a-f]{2}([:-]?)[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}")


def check_lot(lot: str) -> str:
    """Return `lot` if it is a valid lot id, else raise `ValueError` saying why."""
    if not 1 <= len(lot) <= LOT_MAX:
        raise ValueError(f"lot must be 1 to {LOT_MAX} characters")
    if not _LOT_RE.fullmatch(lot):
        raise ValueError(
            "lot may contain only letters A-Z a-z, digits, '.', '_' and '-', and must start "
            "with a letter or digit (it is used as an MQTT topic level)"
        )
    return lot


def check_name(name: str) -> str:
    """Return `name` without surrounding blanks, or raise `ValueError` saying why."""
    name = name.strip()
    if not 1 <= len(name) <= NAME_MAX:
        raise ValueError(f"name must be 1 to {NAME_MAX} characters")
    # Cc/Cf: control and invisible format characters would corrupt tables and logs.
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise ValueError("name may not contain control characters")
    return name


def normalise_mac(mac: str) -> str:
    """`AA-BB-CC-DD-EE-FF`, `aabbccddeeff`, ... -> `aa:bb:cc:dd:ee:ff`; `ValueError` if not a
    unicast MAC-48 (a board's station address is never multicast, zero or broadcast)."""
    text = mac.strip().lower()
    if not _MAC_RE.fullmatch(text):
        raise ValueError("mac must be six hex octets, e.g. aa:bb:cc:dd:ee:ff")
    digits = text.replace(":", "").replace("-", "")
    octets = [digits[i : i + 2] for i in range(0, 12, 2)]
    if int(octets[0], 16) & 0x01:  # the I/G bit (IEEE 802 §8.2): group address
        raise ValueError("mac is a multicast or broadcast address, not a board's")
    if digits == "0" * 12:
        raise ValueError("mac 00:00:00:00:00:00 is not a board's address")
    return ":".join(octets)
