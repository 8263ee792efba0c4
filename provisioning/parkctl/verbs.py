"""How `parkctl` declares its verbs: argparse groups whose handlers load only when they run.

`parkctl` is driven by scripts (a shell loop over hundreds of boards), so start-up is part of
the product: building the parser imports nothing but the standard library, and a
verb's handler module (FastAPI, SQLAlchemy, esptool, httpx, Rich...) is imported only after the
command line parsed, when `call` runs the verb. mpremote's layout: parsing here and in each
area's `cli.py`, handlers in the area's `commands.py`, the transports below them.

Adding a verb (here `parkctl device show`) is two steps:

1. The handler, with typed parameters, in the area's `commands.py` (heavy imports at its top):
   `def device_show(client_id: str, server: str | None, ca_cert: Path | None, as_json: bool)`.
2. Its declaration in the area's `cli.py`, inside the group's function (`device_verbs`):

       cmd = device.verb("show", lambda: _commands().device_show, "One device: state, ...")
       cmd.add_argument("client_id", help="The device's client_id (dev_...).")
       api_options(cmd)  # --server, --ca-cert, --json (dest as_json): every admin-API verb

   The handler is named through the area's `_commands()`, the one place its module is imported
   (`from provisioning.parkctl.registry import commands` inside a function), so the lambda runs
   only when the verb does. Each argument reaches the handler by name: an option's argparse
   `dest` is the parameter's name (`dest="as_json"` for `--json`; `set_defaults(kind=...)` for
   a value the command line does not give). A parameter the verb does not declare takes its
   default.

Options that several verbs share reach their handlers as one frozen dataclass, so their list is
written once: the declaration adds the options, then `options_object(cmd, "options",
ProvisionOptions)`; the handler's parameter `options: ProvisionOptions` gets the dataclass built
from the parsed options named as its fields (`provision` and `fleet provision` do this).

Its bad inputs go in tests/parkctl/test_cli.py `BAD_INPUT` (that test fails for a verb
without them); tests/parkctl/test_verbs.py checks that every handler parameter without a
default (and every field of an options object) has an option of its name (a type checker
cannot follow argparse's names).

A new group is a function like `device_verbs(parkctl: Verbs)` called from `cli.build()`.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any, NoReturn

from provisioning.common.errors import ParkctlError

# A verb's handler (`commands.device_show`), called with its parameters by name.
Handler = Callable[..., None]
# What a verb declares: a function that imports the handler's module when called, and returns
# the handler (`lambda: _commands().device_show`).
HandlerRef = Callable[[], Handler]
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

    def verb(self, name: str, handler: HandlerRef, text: str) -> Parser:
        """A verb: `handler()` is its handler, called by `call` with the parsed arguments of
        the same names; add its options to the parser returned."""
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


@dataclasses.dataclass(frozen=True)
class OptionsObject:
    """A verb's default that `call` turns into `cls`, a frozen dataclass, built from the parsed
    options named as its fields (see `options_object`)."""

    cls: type[Any]

    def build(self, args: argparse.Namespace) -> Any:
        return self.cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(self.cls)})


def options_object(cmd: Parser, dest: str, cls: type[Any]) -> None:
    """Hand the handler's parameter `dest` the options `cmd` declared as one `cls` (a frozen
    dataclass whose fields are named as the options' `dest`s), instead of one by one."""
    cmd.set_defaults(**{dest: OptionsObject(cls)})


def call(args: argparse.Namespace) -> None:
    """Run the verb `args` parsed to: its handler, given each of its parameters that `args`
    has (by name; the others take their defaults), options objects built."""
    import inspect  # only now: not part of `--help`

    handler = args.handler()
    params = inspect.signature(handler).parameters
    given = {name: getattr(args, name) for name in params if hasattr(args, name)}
    handler(**{k: v.build(args) if isinstance(v, OptionsObject) else v for k, v in given.items()})
