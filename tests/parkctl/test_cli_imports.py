"""Each `parkctl` verb loads only what it needs (start-up time is part of the product): `--help`
loads nothing but the parser, verbs that talk to the admin API load neither the server stack nor
esptool/mpremote, board verbs not the server stack (`board ...` not even the admin API client),
`serve` not esptool. Each verb runs for real in a fresh interpreter (against a dead server or
port, so it fails fast) and the test reads `sys.modules` afterwards.

Verbs are enumerated from the parser: a new admin-API verb (one with `--server` and no board) or
board verb is pinned here by itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from provisioning.parkctl.cli import build
from tools.simboard import make_firmware_image

REPO = Path(__file__).resolve().parents[2]
PARSERS = build().all_verbs
SERVER_STACK = {"fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "pydantic_settings"}
BOARD_TOOLS = {"esptool", "mpremote", "serial"}
HEAVY = SERVER_STACK | BOARD_TOOLS | {"httpx", "pydantic", "rich", "cryptography", "jwt"}
DEAD_SERVER = "http://127.0.0.1:9"
DEAD_PORT = "socket://127.0.0.1:9"

# Runs `main()` on argv[2:], then writes the top-level modules loaded to argv[1].
PROBE = """
import json, sys
from provisioning.parkctl.cli import main
try:
    main(sys.argv[2:])
except SystemExit:
    pass
with open(sys.argv[1], "w") as out:
    json.dump(sorted({name.split(".")[0] for name in sys.modules}), out)
"""


def _options(verb: tuple[str, ...]) -> set[str]:
    return {o for a in PARSERS[verb]._actions for o in a.option_strings}


def _is_api_verb(verb: tuple[str, ...]) -> bool:
    options = _options(verb)
    return "--server" in options and not options & {"--port", "--firmware"}


def _is_board_verb(verb: tuple[str, ...]) -> bool:
    return verb[0] == "board" or "--firmware" in _options(verb)


API_VERBS = [v for v in sorted(PARSERS) if _is_api_verb(v)]
BOARD_VERBS = [v for v in sorted(PARSERS) if _is_board_verb(v)]


def _loaded(args: list[str], tmp_path: Path, env: dict[str, str] | None = None) -> set[str]:
    out = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env or dict(os.environ),
        timeout=120,
        check=False,
    )
    assert out.exists(), done.stderr
    return set(json.loads(out.read_text()))


def _required(verb: tuple[str, ...], values: dict[str, str]) -> list[str]:
    """The verb's words and a value for each required argument."""
    args = list(verb)
    for action in PARSERS[verb]._actions:
        if isinstance(action, argparse._HelpAction) or not (
            action.required or not action.option_strings
        ):
            continue
        assert action.dest in values, f"give test_cli_imports a value for {action.dest}"
        args += [*action.option_strings[:1], values[action.dest]]
    return args


def test_the_verbs_are_classified() -> None:
    assert ("device", "list") in API_VERBS and ("admin", "audit") in API_VERBS
    groups = ("device", "lot", "release", "rollout")
    # The release key and the build stay on the operator's machine: no admin API.
    local = {("release", "keygen"), ("release", "build")}
    assert all(_is_api_verb(v) for v in PARSERS if v[0] in groups and v not in local)
    assert not any(_is_api_verb(v) for v in local)
    assert ("board", "info") in BOARD_VERBS and ("provision",) in BOARD_VERBS


@pytest.mark.parametrize("verb", [(), *sorted(PARSERS)], ids=lambda v: " ".join(v) or "parkctl")
def test_help_loads_only_the_parser(verb: tuple[str, ...], tmp_path: Path) -> None:
    assert not _loaded([*verb, "--help"], tmp_path) & HEAVY


@pytest.mark.parametrize("verb", API_VERBS, ids=" ".join)
def test_admin_api_verbs_load_no_server_stack_and_no_board_tools(
    verb: tuple[str, ...], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PARK_SERVER": DEAD_SERVER,
        "PARK_CLIENT_ID": "op_x",
        "PARK_CLIENT_SECRET": "x" * 43,
        "PARK_CACHE_DIR": str(tmp_path / "cache"),
    }
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")
    values = {"client_id": "dev_x", "lot": "north", "name": "gate", "target": "dev_x", "cars": "3"}
    values |= {"directory": str(bundle), "version": "1.2.3", "rollout_id": "1"}
    loaded = _loaded(_required(verb, values), tmp_path, env)
    assert "httpx" in loaded  # it ran as far as the admin API
    assert not loaded & (SERVER_STACK | BOARD_TOOLS), loaded & (SERVER_STACK | BOARD_TOOLS)


@pytest.mark.parametrize("verb", BOARD_VERBS, ids=" ".join)
def test_board_verbs_load_no_server_stack(verb: tuple[str, ...], tmp_path: Path) -> None:
    firmware = tmp_path / "fw.bin"
    make_firmware_image(firmware, chip="esp32")
    config = tmp_path / "config.json"
    config.write_text('{"device_id": "dev_x"}')
    manifest = tmp_path / "fleet.csv"
    manifest.write_text(f"port,lot\n{DEAD_PORT},north\n")
    values = {
        "port": DEAD_PORT,
        "firmware": str(firmware),
        "config": str(config),
        "manifest": str(manifest),
        "lot": "north",
    }
    env = {**os.environ, "PARK_SERVER": DEAD_SERVER, "PARK_CLIENT_ID": "op_x"}
    env |= {"PARK_CLIENT_SECRET": "x" * 43, "PARK_CACHE_DIR": str(tmp_path / "cache")}
    loaded = _loaded(_required(verb, values), tmp_path, env)
    assert "esptool" in loaded  # it ran as far as the board tools
    assert not loaded & SERVER_STACK, loaded & SERVER_STACK
    if verb[0] == "board":  # one board, no registry: not even the admin API client
        assert not loaded & {"httpx", "pydantic"}, loaded & {"httpx", "pydantic"}


def test_serve_loads_no_board_tools(tmp_path: Path) -> None:
    # Fails after the app is built (a database URL nobody can open): the server stack is in.
    loaded = _loaded(["serve", "--db", "bogus://x", "--data-dir", str(tmp_path)], tmp_path)
    assert {"fastapi", "uvicorn", "sqlalchemy"} <= loaded
    assert not loaded & BOARD_TOOLS, loaded & BOARD_TOOLS
