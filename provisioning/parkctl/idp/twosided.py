"""A board registered on two sides: its client at the external server, its device in parkfleet.

Two systems cannot change in one transaction, so every step is ordered to leave what the next
run finishes or undoes:

- register: the external client first (parkfleet needs its client_id), reported to `remember` at
  once (the fleet state file keeps the id, never the secret), then the device record. If parkfleet
  then fails, a run without a state file deletes the external client again; a fleet run keeps it
  for the re-run, which reuses it (a fresh secret, no second client). Either way the message says
  what was made and how to clean it up.
- a board already in parkfleet (found by its MAC) keeps its client: a fresh secret at the
  external server, no new client, so the MAC binding holds on both sides.
- disable and delete act in parkfleet first (posts refused within 1 s whatever the external
  token's lifetime), then at the external server; enable the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from provisioning.common.admin_schemas import Device
from provisioning.common.errors import ParkctlError
from provisioning.parkctl.api.client import AdminClient, DeviceNotFoundError, MacConflictError
from provisioning.parkctl.idp.base import IdentityProvider


@dataclass(frozen=True)
class Registered:
    """A board ready for its config.json; `reused` when its client existed already."""

    client_id: str
    secret: SecretStr
    reused: bool


def ingest_audience(registry: AdminClient, issuer: str) -> str:
    """The service's ingest audience (`GET /admin/config`), after checking it trusts `issuer`:
    a board registered at a server the service does not trust could never post."""
    config = registry.service_config()
    audience, trusted = config.get("ingest_audience"), config.get("trusted_issuers")
    if not isinstance(audience, str) or not isinstance(trusted, list):
        raise ParkctlError(
            f"{registry.server}/admin/config does not name an ingest audience "
            "(is the service older than external issuers?)"
        )
    if issuer not in trusted:
        raise ParkctlError(
            f"the service does not trust {issuer}: start it with --trust-issuer {issuer} "
            "(or PARK_TRUST_ISSUERS), exactly as the server spells its issuer"
        )
    return audience


def _cleanup(idp: IdentityProvider, client_id: str) -> str:
    return (
        f"delete client {client_id} at {idp.issuer} (Auth0: Applications, or "
        f"DELETE /api/v2/clients/{client_id}; RFC 7592: DELETE its registration_client_uri)"
    )


class TwoSided:
    """Boards of one external server recorded in one parkfleet service (thread-safe)."""

    def __init__(self, registry: AdminClient, idp: IdentityProvider) -> None:
        self.registry = registry
        self.idp = idp
        self.audience = ingest_audience(registry, idp.issuer)

    def board_config(self) -> dict[str, Any]:
        """The config.json keys that point a board at the external server."""
        return self.idp.board_config(self.audience)

    def register(
        self,
        lot: str,
        name: str,
        mac: str | None,
        earlier: str | None = None,
        remember: Callable[[str | None], None] | None = None,
    ) -> Registered:
        """Register (or re-key) one board; `earlier` is an external client a previous run made
        for this board (from the state file), `remember` records a new one there."""
        if mac is not None and (device := self.registry.find_by_mac(mac)) is not None:
            return self._rekey(device, lot, name)
        client_id, secret, made = "", None, False
        if earlier:
            secret = self.idp.fresh_secret(earlier)  # None: deleted there meanwhile
            client_id = earlier
        if secret is None:
            client = self.idp.create_client(
                f"parkfleet {lot}/{name} {mac or ''}".strip(), mac, self.audience
            )
            client_id, secret, made = client.client_id, client.client_secret, True
            if remember:
                remember(client_id)
        try:
            self.registry.register_external(lot, name, client_id, self.idp.issuer, mac)
        except MacConflictError as conflict:  # another run registered this board meanwhile
            self._undo(client_id)
            if remember:
                remember(None)
            return self._rekey(self.registry.get_device(conflict.client_id), lot, name)
        except ParkctlError as error:
            raise self._half_made(error, client_id, made and remember is None) from None
        if remember:
            remember(None)  # recorded in parkfleet: the device is the record from now on
        return Registered(client_id, secret, reused=not made)

    def _rekey(self, device: Device, lot: str, name: str) -> Registered:
        if device.issuer != self.idp.issuer:
            where = device.issuer or "parkfleet's own server"
            raise ParkctlError(
                f"board {device.mac} is registered as {device.client_id} with {where}: delete "
                f"it (parkctl device delete {device.client_id}) to move it to {self.idp.issuer}"
            )
        secret = self.idp.fresh_secret(device.client_id)
        if secret is None:
            raise ParkctlError(
                f"device {device.client_id} has no client at {self.idp.issuer} any more: delete "
                f"it in parkfleet (parkctl device delete {device.client_id}) and provision again"
            )
        if (device.lot, device.name) != (lot, name):
            self.registry.update_device(device.client_id, lot=lot, name=name)
        return Registered(device.client_id, secret, reused=True)

    def _undo(self, client_id: str) -> bool:
        try:
            self.idp.delete_client(client_id)
        except ParkctlError:
            return False
        return True

    def _half_made(self, error: ParkctlError, client_id: str, undo: bool) -> ParkctlError:
        """The message for a parkfleet failure after the external client was made."""
        if undo and self._undo(client_id):
            return ParkctlError(
                f"{error.message}; the client made at {self.idp.issuer} for this "
                "board was deleted again, nothing is left half-made"
            )
        if undo:
            return ParkctlError(
                f"{error.message}; client {client_id} was made at "
                f"{self.idp.issuer} and could not be deleted: "
                f"{_cleanup(self.idp, client_id)}"
            )
        return ParkctlError(
            f"{error.message}; client {client_id} was made at {self.idp.issuer} and is kept in "
            "the state file: re-run the same command to finish (it reuses that client), or "
            + _cleanup(self.idp, client_id)
        )


# --- the device verbs on both sides ---


def _external(registry: AdminClient, idp: IdentityProvider, client_id: str) -> Device:
    device = registry.get_device(client_id)
    if device.issuer != idp.issuer:
        raise ParkctlError(
            f"device {client_id} is not a client of {idp.issuer} "
            f"(its issuer: {device.issuer or 'parkfleet'})"
        )
    return device


def set_enabled(
    registry: AdminClient, idp: IdentityProvider, client_id: str, enabled: bool
) -> Device:
    """Disable: parkfleet first (1 s), then the external grant; enable: the other way round."""
    _external(registry, idp, client_id)
    audience = ingest_audience(registry, idp.issuer)
    if enabled:
        idp.set_enabled(client_id, True, audience)
        return registry.enable(client_id)
    device = registry.disable(client_id)
    try:
        idp.set_enabled(client_id, False, audience)
    except ParkctlError as error:
        raise ParkctlError(
            f"{client_id} is disabled in parkfleet (its posts are refused) but "
            f"not at {idp.issuer}: {error.message}; run the command again"
        ) from None
    return device


def rotate_secret(registry: AdminClient, idp: IdentityProvider, client_id: str) -> SecretStr:
    """A new secret at the external server (parkfleet holds none for such a device)."""
    _external(registry, idp, client_id)
    secret = idp.fresh_secret(client_id)
    if secret is None:
        raise ParkctlError(f"{idp.issuer} has no client {client_id} any more")
    return secret


def delete(registry: AdminClient, idp: IdentityProvider, client_id: str) -> None:
    """Delete in parkfleet first (posts refused at once), then at the external server; a device
    already gone from parkfleet still has its external client deleted (finishing a run that
    stopped half-way)."""
    try:
        _external(registry, idp, client_id)
        registry.delete_device(client_id)
    except DeviceNotFoundError:
        pass
    try:
        idp.delete_client(client_id)
    except ParkctlError as error:
        raise ParkctlError(
            f"{client_id} is deleted in parkfleet but not at {idp.issuer}: "
            f"{error.message}; run the command again or " + _cleanup(idp, client_id)
        ) from None
