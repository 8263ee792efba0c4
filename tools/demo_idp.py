"""`python -m tools.demo --idp oidc|auth0`: the demo's boards as clients of an external
authorization server instead of parkfleet's own.

`oidc` starts node-oidc-provider (tools/harness/oidcprovider.py; `make node` installs it), where
parkctl registers each board by RFC 7591 with the provider's initial access token; `auth0` starts
the Auth0 double (tools/harness/auth0double.py) and gives parkctl an M2M application authorized
for the Management API scopes docs/external-idp.md lists. The service is started trusting that
issuer, with its ingest audience, and `parkctl fleet provision` gets `--idp`.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from tools.harness.auth0double import Auth0Double
from tools.harness.oidcprovider import OidcProvider

# What docs/external-idp.md tells an operator to give parkctl's application in a real tenant.
PARKCTL_MANAGEMENT_SCOPES = [
    "create:clients", "read:clients", "update:clients", "delete:clients", "update:client_keys",
    "create:client_grants", "read:client_grants", "delete:client_grants",
]  # fmt: skip


@dataclass
class ExternalIssuer:
    """How the demo's processes are pointed at the external server."""

    label: str
    service_args: list[str]
    service_env: dict[str, str] = field(default_factory=dict)
    parkctl_env: dict[str, str] = field(
        default_factory=dict
    )  # credentials: never on a command line
    provision_args: list[str] = field(default_factory=list)


def start(kind: str, stack: ExitStack, work: Path) -> ExternalIssuer:
    """Start the external server `kind` for the demo (stopped with `stack`)."""
    if kind == "oidc":
        provider = stack.enter_context(OidcProvider(work / "oidc-provider"))
        return ExternalIssuer(
            label=f"node-oidc-provider at {provider.issuer}",
            service_args=[
                "--trust-issuer",
                provider.issuer,
                "--ingest-audience",
                provider.audience,
            ],
            parkctl_env={
                "PARK_IDP_INITIAL_TOKEN": provider.initial_access_token,
                "PARK_IDP_REGISTRATIONS": str(work / "idp-registrations.json"),
            },
            provision_args=["--idp", provider.issuer],
        )
    if kind == "auth0":
        tenant = stack.enter_context(Auth0Double(work / "auth0"))
        client_id, secret = tenant.create_m2m(PARKCTL_MANAGEMENT_SCOPES)
        return ExternalIssuer(
            label=f"the Auth0 double at {tenant.issuer}",
            service_args=[
                "--trust-issuer",
                tenant.issuer,
                "--ingest-audience",
                tenant.ingest_audience,
            ],
            service_env={"PARK_TRUST_CA_CERT": str(tenant.ca_file)},
            parkctl_env={
                "PARK_IDP_CLIENT_ID": client_id,
                "PARK_IDP_CLIENT_SECRET": secret,
                "PARK_IDP_CA_CERT": str(tenant.ca_file),
            },
            # The boards reach the tenant over HTTPS: they get its CA.
            provision_args=["--idp", f"auth0://{tenant.domain}", "--ca-cert", str(tenant.ca_file)],
        )
    raise SystemExit(f"--idp {kind!r}: choose oidc or auth0")
