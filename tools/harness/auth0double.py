"""A double of an Auth0 tenant, as its own process over HTTPS on a free loopback port.

`with Auth0Double(workdir) as tenant:` starts `tools.harness.auth0double_app` (the endpoints and
the Auth0 documentation page each behaviour comes from are listed there) with a throwaway CA
(tools.harness.pki) and gives:

- `.issuer`: `https://localhost:PORT/` (Auth0's `iss`, trailing slash included);
- `.domain`: `localhost:PORT`, for `parkctl ... --idp auth0://DOMAIN`;
- `.ca_file`: the CA's PEM (`PARK_IDP_CA_CERT`, `PARK_TRUST_CA_CERT`), `.ca_der` for boards;
- `.ingest_audience`: the identifier of the tenant's ingest API (scopes counts:write, counts:read);
- `.create_m2m(scopes)`: a Management API M2M app (parkctl's), as (client_id, client_secret);
- `.rate_limit(limit, window_s)`: the Management API budget before it answers 429;
- `.fail(method, path, status, times)`: the next matching Management API calls fail;
- `.state()`: clients (without secrets), grants and request counters, to check what parkctl did.
"""

from __future__ import annotations

import secrets
import ssl
import sys
from pathlib import Path
from typing import Any

import httpx

from tools.harness.net import free_port
from tools.harness.pki import TestPKI, make_pki
from tools.harness.process import ChildProcess
from tools.harness.services import REPO

DEFAULT_INGEST_AUDIENCE = "https://parkfleet.example/ingest"


class Auth0Double(ChildProcess):
    """The double's process; see the module docstring for what it offers."""

    def __init__(
        self,
        workdir: Path,
        ingest_audience: str = DEFAULT_INGEST_AUDIENCE,
        pki: TestPKI | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.pki = pki or make_pki(workdir / "pki")
        self.port = free_port()
        self.domain = f"localhost:{self.port}"
        self.issuer = f"https://{self.domain}/"
        self.ingest_audience = ingest_audience
        self.ca_file = self.pki.ca_pem
        self.ca_der = self.pki.ca_der
        self.log_path = workdir / "auth0double.log"
        self._control = secrets.token_urlsafe(32)
        self._control_file = workdir / "control-token"
        self._control_file.write_text(self._control)
        self._control_file.chmod(0o600)

    def start(self) -> Auth0Double:
        args = [
            sys.executable,
            "-m",
            "tools.harness.auth0double_app",
            "--port",
            str(self.port),
            "--cert",
            str(self.pki.server_cert),
            "--key",
            str(self.pki.server_key),
            "--ingest-audience",
            self.ingest_audience,
            "--control-token-file",
            str(self._control_file),
        ]
        self._spawn("Auth0 double", args, [self.port], timeout=20, cwd=REPO)
        return self

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        with httpx.Client(
            verify=ssl.create_default_context(cafile=self.ca_file), timeout=10
        ) as http:
            headers = {"Authorization": f"Bearer {self._control}"}
            url = f"https://{self.domain}/__double__/{path}"
            response = (
                http.post(url, json=body, headers=headers)
                if body is not None
                else http.get(url, headers=headers)
            )
        response.raise_for_status()
        return response.json()

    def create_m2m(self, scopes: list[str] | None = None, name: str = "parkctl") -> tuple[str, str]:
        """A non-interactive app authorized for the Management API with `scopes` (default: every
        scope the double knows); (client_id, client_secret)."""
        made = self._call("m2m", {"name": name, **({"scopes": scopes} if scopes else {})})
        return str(made["client_id"]), str(made["client_secret"])

    def rate_limit(self, limit: int, window_s: float = 1.0) -> None:
        """Allow `limit` Management API requests per `window_s`, then 429 until the reset."""
        self._call("rate-limit", {"limit": limit, "window_s": window_s})

    def fail(self, method: str, path: str, status: int = 503, times: int = 1) -> None:
        """The next `times` Management API `method` calls on paths starting with `path` fail."""
        self._call("fail", {"method": method, "path": path, "status": status, "times": times})

    def state(self) -> dict[str, Any]:
        """{"clients": [...without secrets], "grants": [...], "requests": {...}}."""
        answer: dict[str, Any] = self._call("state")
        return answer

    def device_clients(self) -> list[dict[str, Any]]:
        """The clients parkctl made for boards (those with a `parkfleet_mac` in their metadata)."""
        return [c for c in self.state()["clients"] if "parkfleet_mac" in c["client_metadata"]]
