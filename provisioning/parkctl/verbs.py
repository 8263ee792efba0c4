"""How `parkctl` declares its verbs: argparse groups whose handlers load only when they run.

`parkctl` is driven by scripts (a shell loop over hundreds of boards), so start-up is part of
the product: building the parser imports nothing but the standard library, and a
verb's handler module (FastAPI, SQLAlchemy, esptool, httpx, Rich...) is imported by the verb's
runner only after the command line parsed. mpremote's layout: parsing here and in each area's
`cli.py`, handlers in the area's `commands.py`, the transports below them.

Adding a verb (here `parkctl device show`):

1. The handler, with typed parameters, in the area's `commands.py` (heavy imports at its top):
   `def device_show(client_id: str, server: str | None, ca_cert: Path | None, as_json: bool)`.
2. Its declaration in the area's `cli.py`, inside the group's function (`device_verbs`):

       cmd = device.verb("show", _show, "One device: state, latest reading and health.")
       cmd.add_argument("client_id", help="The device's client_id (dev_...).")
       api_options(cmd)  # --server, --ca-cert, --json: every admin-API verb

3. Its runner beside the declarations, the one place the handler module is imported:

       def _show(a: Namespace) -> None:
           from provisioning.parkctl.registry import commands

           commands.device_show(a.client_id, a.server, a.ca_cert, a.json)

4. Its bad inputs in tests/parkctl/test_cli.py `BAD_INPUT` (that test fails for a verb
   without them).

A new group is a function like `device_verbs(parkctl: Verbs)` called from `cli.build()`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from provisioning.common.errors import ParkctlError

Handler = Callable[[argparse.Namespace], None]
# Exit status of a command line that does not parse (click's and argparse's convention).
USAGE_EXIT = 2


class _HelpFormatter(argparse.HelpFormatter):
    """Shows `[default: X]` after an option's help when it has a default worth stating."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            default not in (None, False, "", argparse.SUPPRESS)
            and not action.required
            and action.option_strings
            and "%(default)" not in text
        ):
            text += " [default: %(default)s]"
        return text


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose usage errors are `ParkctlError`s: one line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise ParkctlError(f"{self.prog}: {message} (see `{self.prog} --help`)", USAGE_EXIT)


def _parser(prog: str, text: str) -> Parser:
    return Parser(prog=prog, description=text, formatter_class=_HelpFormatter, allow_abbrev=False)


class Verbs:
    """A command group (`parkctl`, `parkctl device`): sub-groups and verbs, each with its help.

    `all_verbs` maps every verb's words (`("device", "list")`) to its parser, for tests that
    must reach every verb: a verb added anywhere shows up there by itself.
    """

    def __init__(
        self, parser: Parser, words: tuple[str, ...], all_verbs: dict[tuple[str, ...], Parser]
    ) -> None:
        self.parser = parser
        self.words = words
        self.all_verbs = all_verbs
        self._choices = parser.add_subparsers(title="commands", metavar="COMMAND")
        # A group without its verb prints the group's help (and exits 2, as before).
        parser.set_defaults(handler=None, group=parser, verb=None)

    @classmethod
    def root(cls, prog: str, text: str) -> Verbs:
        """The top-level group: `parkctl` itself."""
        return cls(_parser(prog, text), (), {})

    def _add(self, name: str, text: str) -> Parser:
        parser: Parser = self._choices.add_parser(
            name,
            help=text,
            description=text,
            formatter_class=_HelpFormatter,
            allow_abbrev=False,
        )
        return parser

    def group(self, name: str, text: str) -> Verbs:
        """A sub-group such as `device`; add its verbs with `.verb()`."""
        return Verbs(self._add(name, text), (*self.words, name), self.all_verbs)

    def verb(self, name: str, handler: Handler, text: str) -> Parser:
        """A verb: `handler(args)` runs it; add its options to the parser returned."""
        parser = self._add(name, text)
        parser.set_defaults(handler=handler, verb=parser)
        self.all_verbs[(*self.words, name)] = parser
        return parser


def int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse `type` for an integer in [low, high] (high None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f"{low}<=x<={high}" if high is not None else f"x>={low}"
            raise argparse.ArgumentTypeError(f"{value} is not in the range {bound}")
        return value

    return parse


def given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The options among `names` that were given on the command line (not None)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}
