"""`httpx` without its command-line client, for `AdminClient` (start-up time is product).

`import httpx` also imports httpx's own CLI (`httpx._main`: click, Rich, Pygments), about half
of httpx's import time, paid by every `parkctl device ...`. Nothing here uses that CLI, and httpx
falls back to a stub when it cannot be imported (`sys.modules[name] = None` makes an import of
`name` fail). Fixed upstream in httpx2 (pydantic/httpx2#947); drop this module with that move.
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

__all__ = ["httpx"]
