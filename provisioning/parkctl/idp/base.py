"""What parkctl needs from any external authorization server (`open_idp` in this package's
`__init__` picks the one `--idp URL` means).

Secrets for parkctl itself come from the environment or a file, never from the command line
(`ps` shows command lines to every user).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr

from provisioning.common.errors import ParkctlError

WRITE_SCOPE = "counts:write"  # exactly what a board is granted


@dataclass(frozen=True)
class ExternalClient:
    """A board's client at the external server; the secret is shown to the board only."""

    client_id: str
    client_secret: SecretStr


class IdentityProvider(Protocol):
    """An external authorization server parkctl registers boards in."""

    issuer: str  # exactly the `iss` of its tokens (the service trusts this string)

    def board_config(self, audience: str) -> dict[str, Any]:
        """config.json keys for a board of this server: token_url, audience, dialect keys."""
        ...

    def create_client(self, name: str, mac: str | None, audience: str) -> ExternalClient:
        """A new client for one board, with only the client-credentials grant and exactly
        `counts:write` on `audience`."""
        ...

    def fresh_secret(self, client_id: str) -> SecretStr | None:
        """A new (or, where the server cannot rotate, the current) secret for `client_id`;
        None if the server has no such client."""
        ...

    def set_enabled(self, client_id: str, enabled: bool, audience: str) -> None:
        """Stop or allow the client getting tokens for `audience` at the server."""
        ...

    def delete_client(self, client_id: str) -> bool:
        """Delete the client; False if it was already gone."""
        ...

    def close(self) -> None: ...


def secret_from(env: str, file_env: str, what: str) -> str | None:
    """A secret from `$env`, else the first line of the file named by `$file_env`."""
    value = os.environ.get(env)
    if value:
        return value
    path = os.environ.get(file_env)
    if not path:
        return None
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise ParkctlError(
            f"cannot read {what} file {path} ({file_env}): {error.strerror}"
        ) from None
    return lines[0].strip() if lines and lines[0].strip() else None
