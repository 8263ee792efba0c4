"""Every verb's handler gets each of its parameters from the command line by name: an option's
argparse `dest` (or a `set_defaults` value) for each parameter without a default, and no
option the handler would never see. An options object (`verbs.options_object`) counts as its
fields: each has an option of its name, and those options are used. A type checker cannot
follow names from argparse to the handler, so this does, for every verb the parser has."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from provisioning.parkctl.cli import build
from provisioning.parkctl.verbs import OptionsObject, Parser

VERBS = sorted(build().all_verbs.items())
PARSING = {"help", "handler", "verb", "group"}  # the parser's own, not the handler's


@pytest.mark.parametrize(("words", "parser"), VERBS, ids=[" ".join(w) for w, _ in VERBS])
def test_arguments_reach_the_handler_by_name(words: tuple[str, ...], parser: Parser) -> None:
    given = {action.dest for action in parser._actions} | set(parser._defaults)
    params = inspect.signature(parser.get_default("handler")()).parameters
    objects = [v.cls for v in parser._defaults.values() if isinstance(v, OptionsObject)]
    fields = {f.name for cls in objects for f in dataclasses.fields(cls)}
    needed = {name for name, p in params.items() if p.default is inspect.Parameter.empty}
    needed |= fields
    assert needed <= given, f"parkctl {' '.join(words)}: no option for {needed - given}"
    # `kind` tells the handlers devices and operators share which one; the rest must be used.
    used = set(params) | fields
    assert given - used - PARSING <= {"kind"}, f"parkctl {' '.join(words)}: unused"
