"""The rules for lot ids, board names and MACs, used by the service, the admin API's models
(`admin_schemas`), the fleet manifest and the MAC read from a board.

Plain functions without pydantic, so the board verbs of `parkctl` check a MAC without loading the
API models (`parkctl`'s start-up time is part of the product). Each returns the normalised
value or raises `ValueError` saying why.
"""

from __future__ import annotations

import re

LOT_MAX = 64  # clients.lot is String(64)
NAME_MAX = 128  # clients.name is String(128)

# Each rule is one regular expression, used both to check input and as the `pattern` in the
# OpenAPI document, so the document and the validators never disagree. `\Z`, not `$`:
# `$` also matches before a final newline.
#
# Lot ids become MQTT topic levels (`parkfleet/lots/<lot>/...`): '/' would add a level, '+' and
# '#' are wildcards (MQTT 5.0 §4.7.1) and may not appear in a published topic. An allow-list is
# stricter than that and also keeps ids safe in URLs, file names and log lines.
LOT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*\Z"
# Names: no control (Cc), invisible format (Cf), line/paragraph separator (Zl, Zp) or surrogate
# (Cs) characters, which would corrupt tables and logs (ranges from Unicode 14), and at least one
# character that is not blank (surrounding blanks are trimmed).
_NOT_IN_NAMES_BMP = (
    r"\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    r"\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
)
# Surrogates and the few format characters beyond the BMP: checked here too, but left out of
# the document's pattern, which JSON Schema tools read as ECMA-262 (no `\U` escapes there).
_NOT_IN_NAMES = _NOT_IN_NAMES_BMP + (
    r"\ud800-\udfff\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3"
    r"\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)


def _name_pattern(forbidden: str) -> str:
    return rf"^[^{forbidden}]*[^{forbidden}\s][^{forbidden}]*\Z"


NAME_PATTERN = _name_pattern(_NOT_IN_NAMES_BMP)
# One line of text that may be empty (a board's reason for refusing an update): no character
# a name may not hold either.
LINE_PATTERN = rf"^[^{_NOT_IN_NAMES_BMP}]*\Z"
LINE_RE = re.compile(rf"[^{_NOT_IN_NAMES}]*")
# A unicast MAC-48 (the I/G bit, IEEE 802 §8.2, is the first octet's lowest bit: a board's
# station address is never a group address) and not all zero, with ':' or '-' or nothing
# between octets.
MAC_PATTERN = (
    r"^\s*(?!(?:00[:-]?){5}00\s*\Z)"
    r"[0-9A-Fa-f][02468AaCcEe]([:-]?)[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}\s*\Z"
)
# A client ID another authorization server gave a board: URL-safe characters only (it appears in
# `/admin/devices/{client_id}` and in logs), as long as clients.client_id holds.
CLIENT_ID_MAX = 64
CLIENT_ID_PATTERN = r"^[A-Za-z0-9._~:|-]{1,64}\Z"
_LOT_RE = re.compile(LOT_PATTERN)
_CLIENT_ID_RE = re.compile(CLIENT_ID_PATTERN)
_NAME_RE = re.compile(_name_pattern(_NOT_IN_NAMES))
_MAC_RE = re.compile(MAC_PATTERN)


def check_lot(lot: str) -> str:
    """Return `lot` if it is a valid lot id, else raise `ValueError` saying why."""
    if not 1 <= len(lot) <= LOT_MAX:
        raise ValueError(f"lot must be 1 to {LOT_MAX} characters")
    if not _LOT_RE.search(lot):
        raise ValueError(
            "lot may contain only letters A-Z a-z, digits, '.', '_' and '-', and must start "
            "with a letter or digit (it is used as an MQTT topic level)"
        )
    return lot


def check_name(name: str) -> str:
    """Return `name` without surrounding blanks, or raise `ValueError` saying why."""
    if not 1 <= len(name) <= NAME_MAX or not name.strip():
        raise ValueError(f"name must be 1 to {NAME_MAX} characters")
    if not _NAME_RE.search(name):
        raise ValueError("name may not contain control characters")
    return name.strip()


def normalise_mac(mac: str) -> str:
    """`AA-BB-CC-DD-EE-FF`, `aabbccddeeff`, ... -> `aa:bb:cc:dd:ee:ff`; `ValueError` if not a
    unicast MAC-48 (a board's station address is never multicast, zero or broadcast)."""
    if not _MAC_RE.search(mac):
        if re.search(r"^\s*[0-9A-Fa-f][13579BbDdFf]", mac):
            raise ValueError("mac is a multicast or broadcast address, not a board's")
        if re.search(r"^\s*(?:00[:-]?){5}00\s*\Z", mac):
            raise ValueError("mac 00:00:00:00:00:00 is not a board's address")
        raise ValueError("mac must be six hex octets, e.g. aa:bb:cc:dd:ee:ff")
    digits = "".join(ch for ch in mac.lower() if ch in "0123456789abcdef")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def check_client_id(client_id: str) -> str:
    """Return `client_id` if it may name an external device, else raise `ValueError`."""
    if not _CLIENT_ID_RE.search(client_id):
        raise ValueError(
            f"client_id must be 1 to {CLIENT_ID_MAX} of the characters A-Z a-z 0-9 . _ ~ : | -"
        )
    return client_id
