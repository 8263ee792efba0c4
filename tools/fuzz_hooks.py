"""Schemathesis hooks for `make fuzz` (tools/fuzz.py): the bearer token each operation needs.

Loaded by `st run` through `SCHEMATHESIS_HOOKS=tools.fuzz_hooks`; the tokens come from the
environment tools/fuzz.py sets (fetched from the service under test, never written to disk).
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: Any) -> None:
    """Keep the fuzzer off its own clients: disabling or rotating them would turn every later
    case into a 401 (the stateful phase finds their IDs in list answers)."""
    protected = set(os.environ.get("PARK_FUZZ_PROTECTED", "").split(","))
    params = case.path_parameters or {}
    for name, value in params.items():
        if value in protected:
            params[name] = "op_someone_else"


@schemathesis.auth(refresh_interval=None, retry_on=[])
class OperationTokens:
    """A device token for `POST /v1/counts`, a counts:read token for the other `/v1` reads,
    an admin token for `/admin`; the OAuth endpoints authenticate in their own bodies."""

    def get(self, case: Any, context: Any) -> dict[str, str]:
        return {
            "device": os.environ["PARK_FUZZ_DEVICE_TOKEN"],
            "reader": os.environ["PARK_FUZZ_READER_TOKEN"],
            "admin": os.environ["PARK_FUZZ_ADMIN_TOKEN"],
        }

    def set(self, case: Any, data: dict[str, str], context: Any) -> None:
        path, method = case.operation.path, case.operation.method.upper()
        if path.startswith("/admin"):
            token = data["admin"]
        elif path == "/v1/counts" and method == "POST":
            token = data["device"]
        elif path.startswith("/v1"):
            token = data["reader"]
        else:
            return
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
