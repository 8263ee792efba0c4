"""parkctl's side of an external authorization server: registering boards as its clients.

Runs on the operator's host (parkctl), never in the service: `auth0` speaks Auth0's Management
API v2, `dcr` RFC 7591/7592 dynamic registration; `twosided` keeps the external client and the
device record in parkfleet in step. Imported only by the verbs given `--idp`.

`auth0://HOST[:PORT]` is an Auth0 tenant (always HTTPS, Management API v2); an `https://` (or
loopback `http://`) URL is an issuer that speaks RFC 7591/7592 dynamic client registration.
"""

from __future__ import annotations

from provisioning.common.errors import ParkctlError
from provisioning.parkctl.idp.base import IdentityProvider


def open_idp(url: str) -> IdentityProvider:
    """The external server `--idp URL` names (see the module docstring)."""
    if url.startswith("auth0://"):
        from provisioning.parkctl.idp.auth0 import Auth0Tenant

        return Auth0Tenant.from_environment(url.removeprefix("auth0://").strip("/"))
    if url.startswith(("https://", "http://")):
        from provisioning.parkctl.idp.dcr import DcrServer

        return DcrServer.from_environment(url)
    raise ParkctlError(
        f"--idp {url!r}: give auth0://TENANT_DOMAIN or the issuer URL of an RFC 7591 server"
    )
