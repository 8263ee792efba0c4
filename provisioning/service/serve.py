"""`parkctl serve`: the authorization server, registry and ingestion API under uvicorn.

Loaded only when `serve` runs: this is where the server stack (FastAPI, uvicorn, SQLAlchemy)
comes in, and never esptool or mpremote.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import uvicorn

from provisioning.common.errors import ParkctlError, first_line
from provisioning.service.app import create_app
from provisioning.service.config import from_flags
from provisioning.service.web.transport import log_config, protocol_for


def _readable(path: Path, what: str) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise ParkctlError(f"cannot read {what} {path}: {error.strerror}") from None


def serve_command(
    host: str | None,
    port: int | None,
    db: str | None,
    data_dir: Path | None,
    token_ttl: int | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    issuer: str | None,
    mqtt_url: str | None,
    mqtt_password_file: Path | None,
    jwks_url: str | None,
    token_rate_burst: int | None,
    token_rate_per_hour: float | None,
    log_level: str | None,
    workers: int | None,
    release_keys: list[Path] | None,
    trust_issuers: list[str] | None,
    ingest_audience: str | None,
    trust_ca_cert: Path | None,
    trusted_proxies: list[str] | None,
) -> None:
    """`parkctl serve`: the flags given (not None) as `Settings` fields, the repeatable ones
    joined with commas as their PARK_* variables are."""
    flags: dict[str, Any] = {
        "host": host,
        "port": port,
        "db": db,
        "data_dir": data_dir,
        "token_ttl": token_ttl,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "issuer": issuer,
        "mqtt_url": mqtt_url,
        "jwks_url": jwks_url,
        "token_rate_burst": token_rate_burst,
        "token_rate_per_hour": token_rate_per_hour,
        "log_level": log_level,
        "workers": workers,
        "release_keys": ",".join(str(p) for p in release_keys) if release_keys else release_keys,
        "trust_issuers": ",".join(trust_issuers) if trust_issuers else trust_issuers,
        "ingest_audience": ingest_audience,
        "trust_ca_cert": trust_ca_cert,
        "trusted_proxies": ",".join(trusted_proxies) if trusted_proxies else trusted_proxies,
    }
    serve({name: value for name, value in flags.items() if value is not None}, mqtt_password_file)


def serve(given: Mapping[str, Any], mqtt_password_file: Path | None = None) -> None:
    """Run the service with the flags `given` (over PARK_* variables, over defaults)."""
    given = dict(given)
    if given.get("mqtt_url") is not None:
        given["mqtt_url"] = _mqtt_url(given["mqtt_url"], mqtt_password_file)
    elif mqtt_password_file is not None:
        raise ParkctlError("--mqtt-password-file goes with --mqtt")
    settings = from_flags(given)
    if settings.log_level not in uvicorn.config.LOG_LEVELS:
        levels = ", ".join(uvicorn.config.LOG_LEVELS)
        raise ParkctlError(f"--log-level {settings.log_level!r}: use one of {levels}")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ParkctlError("--tls-cert and --tls-key go together")
    if settings.tls_cert and settings.tls_key:
        _readable(settings.tls_cert, "TLS certificate")
        _readable(settings.tls_key, "TLS key")
    if settings.workers > 1 and settings.db_url.startswith("sqlite"):
        raise ParkctlError(
            "--workers above 1 needs PostgreSQL (--db postgresql://...): SQLite is single-process"
        )
    try:
        app = create_app(settings)
    except ParkctlError:
        raise
    except Exception as error:  # noqa: BLE001 - any driver or file error: one line, not a traceback
        raise ParkctlError(f"cannot start the service: {first_line(error)}") from None
    target: Any = app
    protocol: Any = protocol_for(settings)
    if settings.workers > 1:
        # The parent has migrated the database and created the keys (create_app above); each
        # worker builds its own app from the same settings (worker.py).
        from provisioning.service import worker

        app.state.ctx.engine.dispose()
        os.environ[worker.ENV] = settings.model_dump_json()
        target, protocol = worker.APP, worker.PROTOCOL
    # One line that says what is served, where and on what data: the operator's first check
    # (plain HTTP without --tls-cert; boards in the field need https).
    where = f"{settings.scheme}://{settings.host}:{settings.port}"
    how = "HTTPS" if settings.scheme == "https" else "plain HTTP without TLS (--tls-cert for https)"
    print(
        f"parkfleet listens on {where} ({how}); dashboard {where}/ui/; data dir "
        f"{settings.data_dir}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        target,
        factory=settings.workers > 1,
        workers=settings.workers,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level),
        access_log=False,  # request lines add nothing the metrics and audit log lack
        timeout_keep_alive=75,  # boards keep their TLS connection between posts
        # Head and body deadlines, connections per source (transport.py); in all, beyond
        # max_connections requests get 503. No `server: uvicorn` banner.
        http=protocol,
        # Forwarded headers only from the configured proxies (uvicorn's default believes any
        # local process: a forged X-Forwarded-For would pick the address every limit keys on).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxy_list,
        limit_concurrency=settings.max_connections,
        server_header=False,
    )


def _mqtt_url(url: str, password_file: Path | None) -> str:
    """`--mqtt` with the password from `password_file`; a password in the flag is refused."""
    parts = urlsplit(url)
    try:
        has_password = parts.password is not None
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        raise ParkctlError("--mqtt: not a URL (mqtt://user@host:port)") from None
    if has_password:
        raise ParkctlError(
            "--mqtt must not hold the password (any user sees it in ps): use "
            "--mqtt-password-file FILE, or give the whole URL in PARK_MQTT_URL"
        )
    if password_file is None:
        return url
    if not parts.username:
        raise ParkctlError("--mqtt-password-file needs a user in --mqtt (mqtt://user@host)")
    try:
        password = password_file.read_text().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        raise ParkctlError(
            f"cannot read --mqtt-password-file: {error.__class__.__name__}"
        ) from None
    netloc = f"{quote(parts.username, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))
