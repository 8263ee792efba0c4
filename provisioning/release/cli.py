"""`parkctl release keygen|build`: the command line only; the work is in `release.commands`."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

from provisioning.registry.cli import api_options
from provisioning.verbs import Verbs


def release_verbs(parkctl: Verbs) -> None:
    """`parkctl release ...`: the release key and signed agent bundles."""
    release = parkctl.group("release", "Signed agent releases (over-the-air updates).")

    text = "Make a P-256 release key: KEY (0600, keep it offline) and KEY.pub beside it."
    cmd = release.verb("keygen", _keygen, text)
    cmd.add_argument("--out", type=Path, required=True, help="Private key file to create.")

    text = "Compile the agent to .mpy and sign a bundle (manifest.json + manifest.sig)."
    cmd = release.verb("build", _build, text)
    cmd.add_argument("--version", required=True, help="X.Y.Z, newer than what boards run.")
    cmd.add_argument("--key", type=Path, required=True, help="The release private key.")
    cmd.add_argument("--out", type=Path, help="Bundle directory (default: release-VERSION).")
    cmd.add_argument(
        "--rollback",
        action="store_true",
        help="A deliberate downgrade: boards install it though it is not newer.",
    )

    text = "Upload a built bundle; the service checks its signature against its release keys."
    cmd = release.verb("publish", _publish, text)
    cmd.add_argument("directory", type=Path, help="The bundle (parkctl release build --out).")
    api_options(cmd)

    cmd = release.verb("list", _list, "Every published release, newest first.")
    api_options(cmd)

    cmd = release.verb("show", _show, "One release and the boards that run or target it.")
    cmd.add_argument("version", help="X.Y.Z")
    api_options(cmd)


def _publish(a: Namespace) -> None:
    from provisioning.release import commands

    commands.publish(a.directory, a.server, a.ca_cert, a.json)


def _list(a: Namespace) -> None:
    from provisioning.release import commands

    commands.list_releases(a.server, a.ca_cert, a.json)


def _show(a: Namespace) -> None:
    from provisioning.release import commands

    commands.show(a.version, a.server, a.ca_cert, a.json)


def _keygen(a: Namespace) -> None:
    from provisioning.release import commands

    commands.keygen(a.out)


def _build(a: Namespace) -> None:
    from provisioning.release import commands

    commands.build(a.version, a.key, a.out, a.rollback)
