"""Fixtures for boards registered at an external authorization server: the server (the Auth0
double or node-oidc-provider), the service trusting it, an operator, and the environment
`parkctl ... --idp` reads (credentials for the external server, its CA)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.parkctl.fleet.conftest import Operator, firmware, operator_service
from tools.harness.auth0double import Auth0Double
from tools.harness.oidcprovider import OidcProvider


@dataclass
class External:
    """The external server, the service trusting it and parkctl's environment for both."""

    kind: str  # "auth0" or "oidc"
    operator: Operator
    idp_url: str  # what `--idp` gets
    issuer: str  # the `iss` the service trusts
    audience: str
    env: dict[str, str]
    ca_pem: Path | None  # the external server's CA (boards get it as --ca-cert)
    server: Auth0Double | OidcProvider

    def board_token(self, client_id: str, secret: str) -> httpx.Response:
        """A client-credentials token request as the board's config makes it."""
        verify: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=self.ca_pem) if self.ca_pem else True
        )
        with httpx.Client(verify=verify, timeout=10) as http:
            if isinstance(self.server, Auth0Double):
                return http.post(
                    f"https://{self.server.domain}/oauth/token",
                    json={"grant_type": "client_credentials", "audience": self.audience,
                          "client_id": client_id, "client_secret": secret},
                )  # fmt: skip
            return http.post(
                str(self.server.metadata()["token_endpoint"]),
                data={"grant_type": "client_credentials", "resource": self.audience,
                      "scope": "counts:write"},
                auth=(client_id, secret),
            )  # fmt: skip

    def post_counts(self, token: str, seq: int) -> int:
        """POST one reading with `token`; the HTTP status."""
        body = {"readings": [{"seq": seq, "cars": 1}]}
        with self.operator.service.client() as http:
            answer = http.post(
                "/v1/counts", json=body, headers={"Authorization": f"Bearer {token}"}
            )
        return int(answer.status_code)


@contextmanager
def _trusting(tmp_path: Path, issuer: str, audience: str, ca: Path | None) -> Iterator[Operator]:
    """The service started with `--trust-issuer ISSUER --ingest-audience AUDIENCE`."""
    args = ["--trust-issuer", issuer, "--ingest-audience", audience]
    env = {"PARK_TRUST_CA_CERT": str(ca)} if ca else {}
    with operator_service(tmp_path, args, env) as operator:
        yield operator


@pytest.fixture
def auth0(tmp_path: Path) -> Iterator[External]:
    """An Auth0 tenant double; parkctl holds an M2M app authorized for exactly the Management
    API scopes docs/external-idp.md lists."""
    with Auth0Double(tmp_path / "auth0") as tenant:
        client_id, secret = tenant.create_m2m(
            ["create:clients", "read:clients", "update:clients", "delete:clients",
             "update:client_keys", "create:client_grants", "read:client_grants",
             "delete:client_grants"]
        )  # fmt: skip
        with _trusting(tmp_path, tenant.issuer, tenant.ingest_audience, tenant.ca_file) as operator:
            env = {
                **operator.env,
                "PARK_IDP_CLIENT_ID": client_id,
                "PARK_IDP_CLIENT_SECRET": secret,
                "PARK_IDP_CA_CERT": str(tenant.ca_file),
            }
            yield External("auth0", operator, f"auth0://{tenant.domain}", tenant.issuer,
                           tenant.ingest_audience, env, tenant.ca_file, tenant)  # fmt: skip


@pytest.fixture
def oidc(tmp_path: Path) -> Iterator[External]:
    """node-oidc-provider with RFC 7591 registration behind an initial access token."""
    with (
        OidcProvider(tmp_path / "oidc") as provider,
        _trusting(tmp_path, provider.issuer, provider.audience, None) as operator,
    ):
        env = {
            **operator.env,
            "PARK_IDP_INITIAL_TOKEN": provider.initial_access_token,
            "PARK_IDP_REGISTRATIONS": str(tmp_path / "idp-registrations.json"),
        }
        yield External("oidc", operator, provider.issuer, provider.issuer,
                           provider.audience, env, None, provider)  # fmt: skip


__all__ = ["firmware"]  # the fleet tests' firmware fixture, shared


def wait_refused(external: External, token: str, since: float, timeout: float = 5.0) -> float:
    """Seconds from `since` (monotonic) until a post with `token` is refused."""
    seq = 1000
    while time.monotonic() - since < timeout:
        seq += 1
        if external.post_counts(token, seq) in (401, 403):
            return time.monotonic() - since
        time.sleep(0.05)
    raise AssertionError(f"posts still accepted {timeout} s after the disable")
