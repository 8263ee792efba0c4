"""What `parkctl` says when the service's URL or the operator is not the right one: each
message names the cause and what to do, instead of the transport's or the server's raw words
(`WRONG_VERSION_NUMBER`, `not_found: Not Found`, `invalid_target: audience unknown...`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from provisioning.common.errors import ParkctlError

# The service's own routes: a server URL that ends in one is a page's or an endpoint's URL.
_ROUTES = ("/ui", "/admin", "/v1", "/oauth", "/.well-known", "/docs", "/metrics")


def check_base(server: str) -> None:
    """Refuse a server URL that is a page of the service (`.../ui/`) instead of its base."""
    try:
        parts = urlsplit(server)
    except ValueError as error:  # e.g. an unclosed "[" of an IPv6 address
        raise ParkctlError(f"server {server!r} is not a usable URL: {error}") from None
    path = parts.path.rstrip("/")
    route = next((r for r in _ROUTES if path == r or path.startswith(r + "/")), None)
    if route is not None:
        raise ParkctlError(
            f"server {server!r} is a page of the service ({route}/...), not its base URL: use "
            f"{parts.scheme}://{parts.netloc} (PARK_SERVER or --server)"
        )


def plain_http(server: str) -> str:
    """An https:// URL that reached a server without TLS (OpenSSL's WRONG_VERSION_NUMBER)."""
    plain = "http://" + server.removeprefix("https://")
    return (
        f"{server} answers plain HTTP, not TLS: the service runs without --tls-cert. Use "
        f"{plain} (or start the service with --tls-cert and --tls-key)"
    )


def not_admin(client_id: str) -> str:
    """Why a client gets no admin token (the admin audience is always known to the service:
    it is this client that may not have it), and what to do."""
    if client_id.startswith("dev_"):
        return f"{client_id} is a board's client ID, not an operator's: give an operator's"
    return (
        f"operator {client_id} is a viewer (it reads counts and the dashboard): this verb "
        "needs an admin operator (parkctl admin create --role admin on the service's host)"
    )
