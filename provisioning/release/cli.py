"""`parkctl release keygen|build`: the command line only; the work is in `release.commands`."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

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


def _keygen(a: Namespace) -> None:
    from provisioning.release import commands

    commands.keygen(a.out)


def _build(a: Namespace) -> None:
    from provisioning.release import commands

    commands.build(a.version, a.key, a.out, a.rollback)
