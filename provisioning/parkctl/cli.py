"""`parkctl`: the one command-line entry point.

Verbs are declared beside the code they drive (`registry/cli.py`, `auth/cli.py`,
`fleet/cli.py`, `serve` here); this module wires them together and is the one place where a
`ParkctlError` becomes a message and an exit code. Nothing heavy is imported before the command
line has parsed (see `provisioning.parkctl.verbs`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TextIO

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.fleet.cli import board_verbs, fleet_verbs, provision_verb
from provisioning.parkctl.keys.cli import keys_verbs
from provisioning.parkctl.registry.cli import admin_verbs, device_verbs, lot_verbs
from provisioning.parkctl.release.cli import release_verbs, rollout_verbs
from provisioning.parkctl.verbs import USAGE_EXIT, Verbs, call


def _serve() -> ModuleType:
    from provisioning.service import serve

    return serve


def serve_verb(parkctl: Verbs) -> None:
    """`parkctl serve`."""
    text = "Run the authorization server, registry and ingestion API."
    cmd = parkctl.verb("serve", lambda: _serve().serve_command, text)
    cmd.add_argument("--host", help="Address to listen on.")
    cmd.add_argument("--port", type=int, help="Port to listen on.")
    cmd.add_argument("--db", help="SQLAlchemy URL (default: SQLite).")
    cmd.add_argument("--data-dir", type=Path, help="Keys, hash key, SQLite file.")
    cmd.add_argument("--token-ttl", type=int, help="Access token lifetime, s.")
    cmd.add_argument("--tls-cert", type=Path, help="PEM certificate (HTTPS).")
    cmd.add_argument("--tls-key", type=Path, help="PEM private key (HTTPS).")
    cmd.add_argument("--issuer", help="`iss` (default: the URL served).")
    cmd.add_argument(
        "--mqtt",
        dest="mqtt_url",
        help="mqtt://user@host:port; the password only from --mqtt-password-file, or the whole "
        "URL in $PARK_MQTT_URL (a command line is visible to every user in ps).",
    )
    cmd.add_argument(
        "--mqtt-password-file", type=Path, help="File holding the MQTT password for --mqtt."
    )
    cmd.add_argument("--jwks-url", help="Verify tokens from this JWKS.")
    cmd.add_argument("--token-rate-burst", type=int, help="Token bucket size.")
    cmd.add_argument("--token-rate-per-hour", type=float, help="Bucket refill.")
    cmd.add_argument("--log-level", help="debug, info, warning.")
    cmd.add_argument("--workers", type=int, help="Worker processes on one port (PostgreSQL).")
    cmd.add_argument(
        "--release-key",
        dest="release_keys",
        action="append",
        type=Path,
        help="Release public key (PEM) that agent releases must be signed by; repeatable.",
    )
    cmd.add_argument(
        "--trust-issuer",
        dest="trust_issuers",
        action="append",
        help="Accept devices' access tokens from this authorization server (its exact `iss`; "
        "https, or http on loopback); repeatable.",
    )
    cmd.add_argument(
        "--ingest-audience",
        help="The audience external tokens must carry (default parkfleet-ingest).",
    )
    cmd.add_argument(
        "--trust-ca-cert", type=Path, help="PEM CA for https issuers (default: system store)."
    )
    cmd.add_argument(
        "--trusted-proxy",
        dest="trusted_proxies",
        action="append",
        help="Address or network of a reverse proxy whose X-Forwarded-For/-Proto are believed "
        "(repeatable; default none: the connecting address is the client's).",
    )


def build() -> Verbs:
    """Every verb of `parkctl`: to add one, call its declaration here (or in its group's)."""
    parkctl = Verbs.root("parkctl", "Provision and run a fleet of parking-lot sensors.")
    serve_verb(parkctl)
    admin_verbs(parkctl)
    device_verbs(parkctl)
    lot_verbs(parkctl)
    keys_verbs(parkctl)
    board_verbs(parkctl)
    provision_verb(parkctl)
    fleet_verbs(parkctl)
    release_verbs(parkctl)
    rollout_verbs(parkctl)
    return parkctl


def run(argv: Sequence[str]) -> None:
    """Parse `argv` (without the program name) and run the verb; raises `ParkctlError`."""
    root = build().parser
    args, extra = root.parse_known_args(argv)
    if extra:  # named by the verb they were given to, not by `parkctl`
        (args.verb or args.group).error(f"unrecognized arguments: {' '.join(extra)}")
    if args.handler is None:
        args.group.print_help()
        raise ParkctlError(f"{args.group.prog}: give a command", USAGE_EXIT)
    call(args)


def report(error: ParkctlError, stream: TextIO | None = None) -> int:
    """Write `error` as one `error: ...` line (red on a terminal); return its exit code."""
    out = stream or sys.stderr
    label = "error:"
    if out.isatty() and not os.environ.get("NO_COLOR"):
        label = "\x1b[31merror:\x1b[0m"
    out.write(f"{label} {error.message}\n")
    out.flush()
    return error.exit_code


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: the one place errors become a message and an exit code."""
    try:
        run(sys.argv[1:] if argv is None else argv)
    except ParkctlError as error:
        sys.exit(report(error))
    except KeyboardInterrupt:
        sys.exit(report(ParkctlError("interrupted", 130)))
    except BrokenPipeError:
        # `parkctl device list | head`: the reader left; say nothing more on a closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
