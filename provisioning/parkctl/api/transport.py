"""One HTTP request from `parkctl` to the service or an authorization server: a failure to
connect becomes one `ParkctlError` that names the server."""

from __future__ import annotations

from typing import Any

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.api import advice
from provisioning.parkctl.api.lean_httpx import httpx


def send(
    http: httpx.Client, where: str, ca_hint: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    """`http.request(...)`; a failure to connect becomes one `ParkctlError` naming `where`
    (and `ca_hint` when the certificate did not verify)."""
    try:
        return http.request(method, url, **kwargs)
    except httpx.TimeoutException:
        raise ParkctlError(f"{where} did not answer in time") from None
    except httpx.InvalidURL as error:
        raise ParkctlError(f"{where} is not a usable URL: {error}") from None
    except httpx.HTTPError as error:
        if "WRONG_VERSION_NUMBER" in str(error) and where.startswith("https://"):
            raise ParkctlError(advice.plain_http(where)) from None
        hint = f" ({ca_hint})" if "CERTIFICATE_VERIFY_FAILED" in str(error) else ""
        raise ParkctlError(f"cannot reach {where}: {error}{hint}") from None
