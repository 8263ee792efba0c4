"""Devices of a trusted external authorization server in the registry: recorded by the client ID
that server gave them and its issuer URL, with no secret here (their tokens are checked by
auth/external.py; their credentials are rotated in that server, never here)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioning.common.rules import (
    check_client_id,
    check_lot,
    check_name,
    normalise_mac,
)
from provisioning.service.registry.service import Conflict, InvalidInput, checked, record_device
from provisioning.store.models import Client


class ClientIdConflict(Conflict):
    """The external client ID is already a client here (now or before a delete)."""

    def __init__(self, client_id: str) -> None:
        super().__init__(
            f"client_id {client_id} is already registered (client IDs are never reused)"
        )
        self.client_id = client_id


def create_device(
    session: Session,
    actor: str,
    lot: str,
    name: str,
    client_id: str,
    issuer: str,
    trusted: tuple[str, ...],
    mac: str | None = None,
) -> Client:
    """Record a board registered in the trusted external server `issuer` under `client_id`: no
    secret is made or stored here (its tokens are that issuer's, auth/external.py)."""
    lot = checked(check_lot, lot)
    name = checked(check_name, name)
    client_id = checked(check_client_id, client_id)
    mac = checked(normalise_mac, mac) if mac is not None else None
    if issuer not in trusted:
        listed = ", ".join(trusted) if trusted else "none"
        raise InvalidInput(
            f"issuer {issuer!r} is not trusted by this service (parkctl serve --trust-issuer; "
            f"trusted: {listed})"
        )
    if session.get(Client, client_id) is not None:
        raise ClientIdConflict(client_id)
    try:
        return record_device(
            session, actor, client_id, lot, name, mac, secret_hash=None, issuer=issuer
        )
    except IntegrityError:  # a concurrent registration of the same client ID
        raise ClientIdConflict(client_id) from None
