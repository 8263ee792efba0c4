"""`parkctl release ...` and `parkctl rollout ...`: the command line only; the work is in
`release.commands`."""

from __future__ import annotations

from argparse import ArgumentTypeError
from pathlib import Path
from types import ModuleType

from provisioning.parkctl.registry.cli import api_options
from provisioning.parkctl.verbs import Verbs, int_range


def _commands() -> ModuleType:
    from provisioning.parkctl.release import commands

    return commands


def release_verbs(parkctl: Verbs) -> None:
    """`parkctl release ...`: the release key and signed agent bundles."""
    release = parkctl.group("release", "Signed agent releases (over-the-air updates).")

    text = "Make a P-256 release key: KEY (0600, keep it offline) and KEY.pub beside it."
    cmd = release.verb("keygen", lambda: _commands().keygen, text)
    cmd.add_argument("--out", type=Path, required=True, help="Private key file to create.")

    text = "Compile the agent to .mpy and sign a bundle (manifest.json + manifest.sig)."
    cmd = release.verb("build", lambda: _commands().build, text)
    cmd.add_argument("--version", required=True, help="X.Y.Z, newer than what boards run.")
    cmd.add_argument("--key", type=Path, required=True, help="The release private key.")
    cmd.add_argument("--out", type=Path, help="Bundle directory (default: release-VERSION).")
    cmd.add_argument(
        "--rollback",
        action="store_true",
        help="A deliberate downgrade: boards install it though it is not newer.",
    )
    cmd.add_argument(
        "--source",
        type=Path,
        help="The agent tree to build (default: the agent that ships with parkctl).",
    )

    text = "Upload a built bundle; the service checks its signature against its release keys."
    cmd = release.verb("publish", lambda: _commands().publish, text)
    cmd.add_argument("directory", type=Path, help="The bundle (parkctl release build --out).")
    api_options(cmd)

    cmd = release.verb(
        "list", lambda: _commands().list_releases, "Every published release, newest first."
    )
    api_options(cmd)

    cmd = release.verb(
        "show", lambda: _commands().show, "One release and the boards that run or target it."
    )
    cmd.add_argument("version", help="X.Y.Z")
    api_options(cmd)


def rollout_verbs(parkctl: Verbs) -> None:
    """`parkctl rollout ...`: a published release to boards, canaries first."""
    rollout = parkctl.group("rollout", "Roll a published release out to boards, canaries first.")

    text = (
        "Start: the boards get VERSION phase by phase; each phase starts when the previous one "
        "ran it for the phase wait and is no less healthy than the boards on the old release."
    )
    cmd = rollout.verb("start", lambda: _commands().rollout_start, text)
    cmd.add_argument("version", help="A published release, X.Y.Z.")
    # One of the two (the service refuses neither with one clear line).
    where = cmd.add_mutually_exclusive_group()
    where.add_argument("--lot", help="Every board of this lot.")
    where.add_argument("--devices", help="Comma-separated device ids.")
    cmd.add_argument(
        "--phases",
        type=phase_list,
        help="Boards per phase, cumulative: counts or shares, e.g. 1,5%%,25%%,100%% (picked by a "
        "stable hash of the device id). Default: --canary, then everyone.",
    )
    cmd.add_argument(
        "--phase-wait",
        type=duration,
        help="How long a phase runs the release before the next may start (e.g. 90s, 30m, 2h; "
        "default: --canary-wait).",
    )
    cmd.add_argument(
        "--max-crash-rate",
        type=share,
        default=0.05,
        help="A phase's share of boards that crashed may be at most this much above the old "
        "release's (default 0.05).",
    )
    cmd.add_argument(
        "--min-online",
        type=share,
        default=0.9,
        help="A phase's share of boards online must be at least this fraction of the old "
        "release's (default 0.9).",
    )
    cmd.add_argument(
        "--parallel",
        type=int_range(1),
        default=25,
        help="Boards downloading at once (the service never has to shed a download).",
    )
    cmd.add_argument(
        "--canary", type=int_range(0), default=1, help="Boards that go first (one phase)."
    )
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
        help="A board this long without an upload counts as offline.",
    )
    api_options(cmd)

    for name, text in (
        ("status", "A rollout (default: the newest) and each of its boards."),
        ("pause", "Pause: no more boards get the release."),
        ("resume", "Resume a paused rollout (the canary wait starts afresh)."),
        ("abort", "Abort: withdraw the targets; boards keep what they run (or --rollback)."),
    ):
        cmd = rollout.verb(name, lambda: _commands().rollout_control, text)
        cmd.set_defaults(action=name)
        cmd.add_argument("rollout_id", metavar="id", nargs="?" if name == "status" else None,
                         type=int_range(1), help="The rollout's id.")  # fmt: skip
        if name == "abort":
            cmd.add_argument(
                "--rollback",
                action="store_true",
                help="Send the boards that took the release back to what each ran before (a "
                "signed rollback release of it must be published: release build --rollback).",
            )
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


def phase_list(text: str) -> list[int | str]:
    """An argparse `type`: `1,5%,25%,100%` as [1, "5%", "25%", "100%"] (checked by the
    service against the number of boards)."""
    items: list[int | str] = []
    for item in text.split(","):
        item = item.strip()
        if item.isdigit() and int(item) >= 1:
            items.append(int(item))
        elif item.endswith("%") and item[:-1].replace(".", "", 1).isdigit():
            items.append(item)
        else:
            raise ArgumentTypeError(f"{item!r}: give board counts or shares, e.g. 1,5%,25%,100%")
    return items


def share(text: str) -> float:
    """An argparse `type`: a share from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a number from 0 to 1") from None
    if not 0 <= value <= 1:
        raise ArgumentTypeError(f"{text!r} must be from 0 to 1")
    return value
