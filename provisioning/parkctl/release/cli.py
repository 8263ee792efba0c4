"""`parkctl release ...` and `parkctl rollout ...`: the command line only; the work is in
`release.commands`."""

from __future__ import annotations

from argparse import ArgumentTypeError, Namespace
from pathlib import Path

from provisioning.parkctl.registry.cli import api_options
from provisioning.parkctl.verbs import Verbs, int_range


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
    from provisioning.parkctl.release import commands

    commands.publish(a.directory, a.server, a.ca_cert, a.json)


def _list(a: Namespace) -> None:
    from provisioning.parkctl.release import commands

    commands.list_releases(a.server, a.ca_cert, a.json)


def _show(a: Namespace) -> None:
    from provisioning.parkctl.release import commands

    commands.show(a.version, a.server, a.ca_cert, a.json)


def _keygen(a: Namespace) -> None:
    from provisioning.parkctl.release import commands

    commands.keygen(a.out)


def _build(a: Namespace) -> None:
    from provisioning.parkctl.release import commands

    commands.build(a.version, a.key, a.out, a.rollback)


def rollout_verbs(parkctl: Verbs) -> None:
    """`parkctl rollout ...`: a published release to boards, canaries first."""
    rollout = parkctl.group("rollout", "Roll a published release out to boards, canaries first.")

    text = "Start: the canaries get VERSION; the rest after the canaries' wait."
    cmd = rollout.verb("start", _start, text)
    cmd.add_argument("version", help="A published release, X.Y.Z.")
    # One of the two (the service refuses neither with one clear line).
    where = cmd.add_mutually_exclusive_group()
    where.add_argument("--lot", help="Every board of this lot.")
    where.add_argument("--devices", help="Comma-separated device ids.")
    cmd.add_argument("--canary", type=int_range(0), default=1, help="Boards that go first.")
    cmd.add_argument(
        "--canary-wait",
        type=duration,
        default="30m",
        help="How long the canaries must run it and keep uploading (e.g. 90s, 30m, 2h).",
    )
    cmd.add_argument(
        "--silence",
        type=duration,
        default="15m",
        help="A canary this long without an upload pauses the rollout.",
    )
    api_options(cmd)

    for name, text in (
        ("status", "A rollout (default: the newest) and each of its boards."),
        ("pause", "Pause: no more boards get the release."),
        ("resume", "Resume a paused rollout (the canary wait starts afresh)."),
        ("abort", "Abort: withdraw the targets; boards keep what they run."),
    ):
        cmd = rollout.verb(name, _control, text)
        cmd.add_argument("id", nargs="?" if name == "status" else None, type=int_range(1),
                         help="The rollout's id.")  # fmt: skip
        api_options(cmd)


def duration(text: str) -> float:
    """An argparse `type`: `90`, `90s`, `30m`, `2h` as seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a duration like 90s, 30m or 2h") from None
    if not 0 <= value < 10 * 86400:
        raise ArgumentTypeError(f"{text!r} must be between 0 and 10 days")
    return value


def _start(a: Namespace) -> None:
    from provisioning.parkctl.release import commands

    devices = [d for d in a.devices.split(",") if d] if a.devices else None
    commands.rollout_start(
        a.version, a.lot, devices, a.canary, a.canary_wait, a.silence, a.server, a.ca_cert, a.json
    )


def _control(a: Namespace) -> None:
    from provisioning.parkctl.release import commands

    action = a.verb.prog.split()[-1]
    commands.rollout_control(action, a.id, a.server, a.ca_cert, a.json)
