"""The key-encryption key (KEK) that keeps private signing keys out of plain database rows.

Every instance sharing one database signs with the same keys, so the private keys live in the
database (`signing_keys.private_key_enc`), sealed with AES-256-GCM (NIST SP 800-38D) under a
256-bit KEK that never enters the database: a stolen database or backup alone signs nothing.
Each instance reads the KEK from `PARK_KEK` (base64url of 32 bytes) or, when that is unset,
from `<data_dir>/key-encryption.key` (0600, created on first start like secret-hash.key).
Instances on several hosts must be given the same KEK (copy the file, or set the variable).
The key's `kid` is the associated data, so a sealed key cannot be moved to another row.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from provisioning.common.errors import ParkctlError
from provisioning.service.auth.secrets import write_private_file

KEK_FILE = "key-encryption.key"
KEK_ENV = "PARK_KEK"
_NONCE = 12  # bytes: GCM's 96-bit IV (SP 800-38D §8.2.2, random construction)
_AAD = b"parkfleet signing key "


def new_kek_text() -> str:
    """A fresh KEK as PARK_KEK wants it (base64url, 256 bits)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def load_kek(data_dir: Path) -> bytes:
    """The KEK from PARK_KEK, else from the data directory (created there on first start)."""
    text = os.environ.get(KEK_ENV)
    if text:
        try:
            key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise ParkctlError(f"{KEK_ENV}: not base64url") from None
        if len(key) != 32:
            raise ParkctlError(f"{KEK_ENV}: must hold 32 bytes (256 bits), base64url")
        return key
    path = data_dir / KEK_FILE
    if not path.exists():
        write_private_file(path, secrets.token_bytes(32))
    key = path.read_bytes()
    if len(key) != 32:
        raise ParkctlError(f"{path}: a key-encryption key is 32 bytes")
    return key


class KeyWrap:
    """Seals and opens private keys under the KEK (AES-256-GCM, random 96-bit nonce)."""

    def __init__(self, kek: bytes) -> None:
        self._aead = AESGCM(kek)

    def seal(self, kid: str, private_pem: bytes) -> bytes:
        """nonce || ciphertext+tag, bound to `kid`."""
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, private_pem, _AAD + kid.encode())

    def open(self, kid: str, sealed: bytes) -> bytes:
        """The private PEM; a wrong KEK or a tampered row is one clear error."""
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], _AAD + kid.encode())
        except InvalidTag:
            raise ParkctlError(
                f"cannot decrypt signing key {kid}: this instance's key-encryption key "
                f"({KEK_ENV} or {KEK_FILE}) differs from the one that sealed it"
            ) from None
