"""RFC 7591 registration access tokens on the operator's host, sealed like the signing keys.

Each board's registration access token manages its client (RFC 7592), so it is a secret. It is
kept by parkctl, the only program that manages clients, in `PARK_IDP_REGISTRATIONS` (default
`~/.config/parkfleet/idp-registrations.json`, owner-only) with its `registration_client_uri`,
the token itself sealed with AES-256-GCM (NIST SP 800-38D) under a 256-bit key-encryption key
that is not in that file: `PARK_IDP_KEK` (base64url of 32 bytes), else `idp-registrations.key`
beside it (0600, made on first use). The associated data is the issuer and client ID, so a
sealed token cannot be moved to another client's entry. A copy of the registrations file alone
(a backup, a shared folder) manages nothing, and parkfleet's database never holds these tokens.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
import tempfile
import threading
from pathlib import Path
from typing import Any

from provisioning.common.errors import ParkctlError

KEK_ENV = "PARK_IDP_KEK"
_NONCE = 12  # bytes: GCM's 96-bit IV, random (SP 800-38D §8.2.2)


def _store_path() -> Path:
    if explicit := os.environ.get("PARK_IDP_REGISTRATIONS"):
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "parkfleet" / "idp-registrations.json"


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically as an owner-only file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _check_private(path: Path) -> bool:
    """Whether `path` exists; ParkctlError if others could read or write it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return False
    if info.st_mode & 0o077 or info.st_uid != os.getuid():
        raise ParkctlError(f"{path} must be owned by you and private (chmod 600)")
    return True


class RegistrationStore:
    """Registration access tokens by (issuer, client_id); see the module docstring."""

    _lock = threading.Lock()  # this process's threads; other processes see atomic renames

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or _store_path()
        self.key_path = self.path.with_name("idp-registrations.key")

    def _kek(self) -> bytes:
        text = os.environ.get(KEK_ENV)
        if not text and _check_private(self.key_path):
            text = self.key_path.read_text(encoding="utf-8").strip()
        if not text:
            text = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
            _write_private(self.key_path, text + "\n")
        try:
            key = _b64decode(text)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise ParkctlError(f"{KEK_ENV} or {self.key_path} is not 32 bytes in base64url")
        return key

    def _load(self) -> dict[str, dict[str, str]]:
        if not _check_private(self.path):
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ParkctlError(f"{self.path} is unreadable: {error}") from None
        return data if isinstance(data, dict) else {}

    def get(self, issuer: str, client_id: str) -> dict[str, str] | None:
        """{"registration_access_token", "registration_client_uri"}, or None if unknown."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        with self._lock:
            entry = self._load().get(f"{issuer} {client_id}")
            if not isinstance(entry, dict):
                return None
            try:
                blob = _b64decode(str(entry["sealed_token"]))
                aad = f"{issuer} {client_id}".encode()
                token = AESGCM(self._kek()).decrypt(blob[:_NONCE], blob[_NONCE:], aad)
            except (KeyError, binascii.Error, ValueError, InvalidTag):
                raise ParkctlError(
                    f"the registration access token of {client_id} in {self.path} cannot be "
                    f"unsealed (another {KEK_ENV} or key file?)"
                ) from None
            return {
                "registration_access_token": token.decode(),
                "registration_client_uri": str(entry["registration_client_uri"]),
            }

    def put(self, issuer: str, client_id: str, token: str | None, uri: str = "") -> None:
        """Seal and store `token` (with its client URI) for `client_id`; None drops it."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        with self._lock:
            data: dict[str, Any] = self._load()
            key = f"{issuer} {client_id}"
            if token is None:
                data.pop(key, None)
            else:
                nonce = secrets.token_bytes(_NONCE)
                sealed = AESGCM(self._kek()).encrypt(nonce, token.encode(), key.encode())
                data[key] = {
                    "registration_client_uri": uri,
                    "sealed_token": base64.urlsafe_b64encode(nonce + sealed).decode(),
                }
            _write_private(self.path, json.dumps(data, indent=1))
