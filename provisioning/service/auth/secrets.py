"""Client identifiers and secrets: generated here, shown once, stored only as keyed hashes.

Secrets carry 256 bits from `secrets`, so a fast keyed hash (HMAC-SHA256) is as strong as a slow
password hash would be, and keeps the token endpoint cheap. The HMAC key lives in a 0600 file in
the data directory, never in the database: a stolen database alone verifies nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_BYTES = 32  # 256 bits
HASH_KEY_FILE = "secret-hash.key"
_HASH_PREFIX = "hmac-sha256$"


def same_text(presented: str, expected: str) -> bool:
    """Constant-time equality of two strings of any content (a CSRF field, a cookie, a hash).

    `hmac.compare_digest` raises TypeError on a `str` with a non-ASCII character, and a request
    can carry any: both sides are compared as UTF-8 bytes instead (`surrogatepass`, so a lone
    surrogate is compared too, never raised on).
    """
    return hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def new_client_id(kind: str) -> str:
    """A public, unguessable client identifier such as `dev_4kQ...`."""
    # A viewer is an operator with fewer rights: the same prefix.
    prefix = {"device": "dev", "operator": "op", "viewer": "op"}[kind]
    return f"{prefix}_{secrets.token_urlsafe(12)}"


def new_client_secret() -> str:
    """256 random bits, URL-safe (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def write_private_file(path: Path, data: bytes) -> None:
    """Create `path` with owner-only permissions from the first byte (no chmod race)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class SecretHasher:
    """Keyed hashing and constant-time checking of client secrets."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("secret-hash key must be at least 32 bytes")
        self._key = key

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> SecretHasher:
        """Load the hash key from the data directory, creating it on first start."""
        path = data_dir / HASH_KEY_FILE
        if not path.exists():
            write_private_file(path, secrets.token_bytes(32))
        return cls(path.read_bytes())

    def hash(self, secret: str) -> str:
        digest = hmac.new(self._key, secret.encode("utf-8"), hashlib.sha256).hexdigest()
        return _HASH_PREFIX + digest

    def verify(self, secret: str, stored: str | None) -> bool:
        """True if `secret` hashes to `stored`; constant time in the secret's content."""
        if not stored:
            return False
        return same_text(self.hash(secret), stored)
