"""`parkctl`: the one command-line entry point. Sub-commands live beside the code they drive;
this module only wires them together and turns `ParkctlError` into a message and exit code."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit, urlunsplit

import typer
from rich.console import Console

from provisioning.auth.cli import keys_app
from provisioning.errors import ParkctlError
from provisioning.fleet.cli import board_app, fleet_app, provision_command
from provisioning.registry.cli import admin_app, device_app

app = typer.Typer(
    name="parkctl",
    help="Provision and run a fleet of parking-lot sensors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(admin_app, name="admin")
app.add_typer(device_app, name="device")
app.add_typer(keys_app, name="keys")
app.add_typer(board_app, name="board")
app.add_typer(fleet_app, name="fleet")
app.command("provision")(provision_command)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL (default: SQLite).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Keys, hash key, SQLite file.")] = None,
    token_ttl: Annotated[int | None, typer.Option(help="Access token lifetime, s.")] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate (HTTPS).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key (HTTPS).")] = None,
    issuer: Annotated[str | None, typer.Option(help="`iss` (default: the URL served).")] = None,
    mqtt: Annotated[
        str | None,
        typer.Option(
            help="mqtt://user@host:port; the password only from --mqtt-password-file, or the "
            "whole URL in $PARK_MQTT_URL (a command line is visible to every user in ps)."
        ),
    ] = None,
    mqtt_password_file: Annotated[
        Path | None, typer.Option(help="File holding the MQTT password for --mqtt.")
    ] = None,
    jwks_url: Annotated[str | None, typer.Option(help="Verify tokens from this JWKS.")] = None,
    token_rate_burst: Annotated[int | None, typer.Option(help="Token bucket size.")] = None,
    token_rate_per_hour: Annotated[float | None, typer.Option(help="Bucket refill.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning.")] = None,
) -> None:
    """Run the authorization server, registry and ingestion API."""
    import uvicorn

    from provisioning.app import create_app
    from provisioning.config import Settings
    from provisioning.transport import log_config, protocol_for

    if mqtt is not None:
        mqtt = _mqtt_url(mqtt, mqtt_password_file)
    elif mqtt_password_file is not None:
        raise ParkctlError("--mqtt-password-file goes with --mqtt")
    given: dict[str, Any] = {
        "host": host,
        "port": port,
        "db": db,
        "data_dir": data_dir,
        "token_ttl": token_ttl,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "issuer": issuer,
        "mqtt_url": mqtt,
        "jwks_url": jwks_url,
        "token_rate_burst": token_rate_burst,
        "token_rate_per_hour": token_rate_per_hour,
        "log_level": log_level,
    }
    # Flags beat PARK_* variables, which beat defaults: pass only the flags actually given.
    settings = Settings(**{k: v for k, v in given.items() if v is not None})
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise ParkctlError("--tls-cert and --tls-key go together")
    uvicorn.run(
        create_app(settings),
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
        http=protocol_for(settings),
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


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ParkctlError as error:
        Console(stderr=True).print(f"[red]error:[/red] {error.message}", highlight=False)
        sys.exit(error.exit_code)
