"""`parkctl serve`: the authorization server, registry and ingestion API under uvicorn.

Loaded only when `serve` runs: this is where the server stack (FastAPI, uvicorn, SQLAlchemy)
comes in, and never esptool or mpremote.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn

from provisioning.app import create_app
from provisioning.config import from_flags
from provisioning.errors import ParkctlError, first_line


def _readable(path: Path, what: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise ParkctlError(f"cannot read {what} {path}: {error.strerror}") from None


def serve(given: Mapping[str, Any]) -> None:
    """Run the service with the flags `given` (over PARK_* variables, over defaults)."""
    settings = from_flags(given)
    if settings.log_level not in uvicorn.config.LOG_LEVELS:
        levels = ", ".join(uvicorn.config.LOG_LEVELS)
        raise ParkctlError(f"--log-level {settings.log_level!r}: use one of {levels}")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ParkctlError("--tls-cert and --tls-key go together")
    if settings.tls_cert and settings.tls_key:
        _readable(settings.tls_cert, "TLS certificate")
        _readable(settings.tls_key, "TLS key")
    try:
        app = create_app(settings)
    except ParkctlError:
        raise
    except Exception as error:  # noqa: BLE001 - any driver or file error: one line, not a traceback
        raise ParkctlError(f"cannot start the service: {first_line(error)}") from None
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        log_level=settings.log_level,
        access_log=False,  # request lines add nothing the metrics and audit log lack
        timeout_keep_alive=75,  # boards keep their TLS connection between posts
    )
