"""Debian's Chromium driven by Playwright for Python (never `playwright install`: the browser is
the distribution's package, which `.ci/run` installs when it is missing)."""

from __future__ import annotations

from pathlib import Path

from tools.harness.services import missing

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """The Chromium binary, or skip (a user's machine) / fail (CI) without it."""
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing("playwright is not installed (`make venv` installs the dev extras)")
    return str(CHROMIUM)
