"""Access tokens cached on disk between `parkctl` runs, for the admin API client and the
external authorization servers' clients alike (the token endpoint's rate limits make a token per
call too dear: a fleet run of hundreds of calls costs one)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

# Stop using a cached token this long before it expires (clock skew, a slow request).
EXPIRY_MARGIN_S = 60.0


def default_cache_dir() -> Path:
    """`$PARK_CACHE_DIR`, else `$XDG_CACHE_HOME/parkfleet`, else `~/.cache/parkfleet`."""
    if explicit := os.environ.get("PARK_CACHE_DIR"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "parkfleet"


class TokenCache:
    """Access tokens on disk, keyed by server URL, client ID and audience.

    The file is owner-only (0600) like an SSH key: a cached token is as good as the secret
    until it expires. Writes go to a fresh temporary file renamed over the old one, so
    parallel `parkctl` processes never see a half-written file (last writer wins).
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or default_cache_dir()) / "tokens.json"

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            info = self.path.stat()
            if info.st_mode & 0o077 or info.st_uid != os.getuid():
                return {}  # someone else could have written it: do not trust its tokens
            data = json.loads(self.path.read_text())
            tokens = data.get("tokens", {}) if isinstance(data, dict) else {}
            return tokens if isinstance(tokens, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, key: str, now: float | None = None) -> tuple[str, float] | None:
        """(token, use until) for `key` if it is still good to use."""
        entry = self._load().get(key)
        now = time.time() if now is None else now
        if not isinstance(entry, dict):
            return None
        token, use_until = entry.get("access_token"), entry.get("use_until")
        if isinstance(token, str) and isinstance(use_until, int | float) and now < use_until:
            return token, float(use_until)
        return None

    def put(self, key: str, token: str | None, use_until: float = 0.0) -> None:
        """Store `token` for `key` until `use_until`; `None` drops the entry."""
        now = time.time()
        tokens = {k: v for k, v in self._load().items() if v.get("use_until", 0) > now}
        tokens.pop(key, None)
        if token is not None:
            tokens[key] = {"access_token": token, "use_until": use_until}
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix="tokens.", dir=self.path.parent)  # created 0600
        try:
            with os.fdopen(fd, "w") as out:
                json.dump({"version": 1, "tokens": tokens}, out)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
