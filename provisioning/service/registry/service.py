"""The device registry: devices and operators as OAuth 2.0 clients (RFC 6749 §2).

Plain functions over a SQLAlchemy `Session`, used by the admin API and by `parkctl admin create`.
Each mutating function is one transaction: it validates everything first, then commits the change
together with its audit event, so a bad input changes nothing and every change is audited.
Secrets are generated here (never accepted from a caller), returned once and stored only as
keyed hashes (auth/secrets.py).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from provisioning.common.rules import check_lot, check_name, normalise_mac
from provisioning.common.scopes import DEVICE, OPERATOR, VIEWER
from provisioning.service.auth.secrets import SecretHasher, new_client_id, new_client_secret
from provisioning.store import audit
from provisioning.store.models import AuditEvent, Client, DeviceState

MAX_PAGE = 500
T = TypeVar("T")


class RegistryError(Exception):
    """A request the registry refuses; `error` and `status` are what the admin API answers."""

    error = "invalid_request"
    status = 422

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class InvalidInput(RegistryError):
    """A lot, name, MAC, cursor or limit that breaks the rules; nothing was changed."""


class DeviceNotFound(RegistryError):
    error = "not_found"
    status = 404

    def __init__(self, client_id: str, kind: str = DEVICE) -> None:
        super().__init__(f"no {kind} with client_id {client_id!r}")
        self.client_id = client_id


class Conflict(RegistryError):
    """A request at odds with what the registry holds (409)."""

    error = "conflict"
    status = 409


class LastOperator(Conflict):
    """Disabling or deleting the last enabled operator would lock everyone out of the API."""

    def __init__(self, client_id: str) -> None:
        super().__init__(
            f"operator {client_id} is the last enabled operator: create or enable another first"
        )


class MacConflict(Conflict):
    """The MAC is bound to another device; `client_id` names it so a caller can reuse it."""

    def __init__(self, mac: str, client_id: str) -> None:
        super().__init__(f"mac {mac} is already registered as device {client_id}")
        self.mac = mac
        self.client_id = client_id


class SecretElsewhere(Conflict):
    """A device of an external server has no secret here to rotate."""

    def __init__(self, client_id: str, issuer: str) -> None:
        super().__init__(
            f"device {client_id} gets its secret from {issuer}: rotate it there "
            "(parkctl device rotate-secret --idp)"
        )


@dataclass(frozen=True)
class DeviceRow:
    """A device with what the ingestion API last recorded for it (None: never heard from)."""

    client: Client
    state: DeviceState | None


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None  # None: this was the last page


def checked(rule: Callable[[str], str], value: str) -> str:
    """Apply a rules.py rule; its `ValueError` becomes `InvalidInput`."""
    try:
        return rule(value)
    except ValueError as error:
        raise InvalidInput(str(error)) from None


def _commit_or_conflict(session: Session, mac: str | None) -> None:
    """Commit; a lost race on the unique MAC (a concurrent register) becomes `MacConflict`."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        holder = find_by_mac(session, mac) if mac else None
        if holder is None:
            raise
        raise MacConflict(mac or "", holder.client_id) from None


def _add_client(
    session: Session,
    client_id: str,
    kind: str,
    name: str,
    secret_hash: str | None,
    lot: str | None = None,
    mac: str | None = None,
    issuer: str | None = None,
) -> Client:
    """Add a new enabled client to `session`; the caller audits and commits."""
    now = time.time()
    client = Client(
        client_id=client_id,
        kind=kind,
        name=name,
        lot=lot,
        mac=mac,
        secret_hash=secret_hash,
        enabled=True,
        created_at=now,
        updated_at=now,
        issuer=issuer,
    )
    session.add(client)
    return client


def record_device(
    session: Session,
    actor: str,
    client_id: str,
    lot: str,
    name: str,
    mac: str | None,
    secret_hash: str | None,
    issuer: str | None = None,
) -> Client:
    """Record a device whose lot, name and MAC already passed their rules (`checked`), audited
    as `device.create`, in one transaction.

    A MAC binds the client to one board, so registering the same board twice is a
    `MacConflict` naming the existing client instead of an orphan. `issuer`: the trusted
    external server the device gets its tokens from (registry/external.py); None: this one.
    """
    if mac is not None and (holder := find_by_mac(session, mac)) is not None:
        raise MacConflict(mac, holder.client_id)
    client = _add_client(session, client_id, DEVICE, name, secret_hash, lot, mac, issuer)
    detail = {"lot": lot, "name": name, "mac": mac}
    if issuer is not None:
        detail["issuer"] = issuer
    audit.record(session, actor, "device.create", client_id, detail)
    _commit_or_conflict(session, mac)
    return client


def create_device(
    session: Session,
    hasher: SecretHasher,
    actor: str,
    lot: str,
    name: str,
    mac: str | None = None,
) -> tuple[Client, str]:
    """Register a board; returns the client and its secret, which is not stored anywhere
    (`record_device` says what a MAC binds)."""
    lot = checked(check_lot, lot)
    name = checked(check_name, name)
    mac = checked(normalise_mac, mac) if mac is not None else None
    client_id, secret = new_client_id(DEVICE), new_client_secret()
    client = record_device(session, actor, client_id, lot, name, mac, hasher.hash(secret))
    return client, secret


ROLES = {"admin": OPERATOR, "viewer": VIEWER}


def create_operator(
    session: Session, hasher: SecretHasher, actor: str, name: str, role: str = "admin"
) -> tuple[Client, str]:
    """Create an operator client; returns it and its secret, once. An `admin` may use the
    admin API; a `viewer` gets `counts:read` only (scopes.ALLOWED)."""
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    kind = ROLES[role]
    secret = new_client_secret()
    client = _add_client(
        session, new_client_id(kind), kind, checked(check_name, name), hasher.hash(secret)
    )
    audit.record(session, actor, "operator.create", client.client_id, {"name": name, "role": role})
    session.commit()
    return client, secret


def _live_devices() -> Select[Client, DeviceState]:
    return (
        select(Client, DeviceState)
        .outerjoin(DeviceState, DeviceState.device_id == Client.client_id)
        .where(Client.kind == DEVICE, Client.deleted_at.is_(None))
    )


def get_device(session: Session, client_id: str, kind: str = DEVICE) -> Client:
    """The live (not deleted) client `client_id` of `kind`, or `DeviceNotFound`."""
    client = session.get(Client, client_id)
    if client is None or client.kind != kind or client.deleted_at is not None:
        raise DeviceNotFound(client_id, kind)
    return client


def get_device_row(session: Session, client_id: str) -> DeviceRow:
    """`get_device` plus its latest reading and health."""
    row = session.execute(_live_devices().where(Client.client_id == client_id)).first()
    if row is None:
        raise DeviceNotFound(client_id)
    return DeviceRow(row[0], row[1])


def find_by_mac(session: Session, mac: str) -> Client | None:
    """The live device bound to `mac` (any spelling), or None."""
    mac = checked(normalise_mac, mac)
    return session.scalars(
        select(Client).where(Client.mac == mac, Client.deleted_at.is_(None))
    ).first()


def list_operators(session: Session) -> list[Client]:
    """Live operators, oldest first (a handful: no pagination)."""
    query = select(Client).where(Client.kind == OPERATOR, Client.deleted_at.is_(None))
    return list(session.scalars(query.order_by(Client.created_at, Client.client_id)))


# Device cursors are `<created_at>~<client_id>` (keyset pagination): anything matching
# DEVICE_CURSOR_PATTERN decodes, so the OpenAPI document can describe it exactly.
DEVICE_CURSOR_PATTERN = r"^[0-9]{1,20}(?:\.[0-9]{1,20})?~[A-Za-z0-9_-]{1,64}\Z"
_DEVICE_CURSOR = re.compile(DEVICE_CURSOR_PATTERN)
# Audit cursors are event ids: 18 digits stay below BIGINT's 2**63 - 1.
AUDIT_CURSOR_PATTERN = r"^[0-9]{1,18}\Z"
_AUDIT_CURSOR = re.compile(AUDIT_CURSOR_PATTERN)


def _encode_cursor(created_at: float, client_id: str) -> str:
    # repr: the shortest text that reads back as exactly the same float (keyset equality).
    return f"{created_at!r}~{client_id}"


def _decode_cursor(cursor: str) -> tuple[float, str]:
    if not _DEVICE_CURSOR.search(cursor):
        raise InvalidInput("cursor is not one this server returned")
    created_at, _, client_id = cursor.partition("~")
    return float(created_at), client_id


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit must be 1 to {MAX_PAGE}")
    return limit


def list_devices(
    session: Session,
    lot: str | None = None,
    mac: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[DeviceRow]:
    """Live devices, oldest first, `limit` at a time.

    Keyset pagination on (created_at, client_id): a page never repeats or skips a device when
    others are registered or deleted between requests, unlike OFFSET.
    """
    limit = _check_limit(limit)
    query = _live_devices()
    if lot is not None:
        query = query.where(Client.lot == checked(check_lot, lot))
    if mac is not None:
        query = query.where(Client.mac == checked(normalise_mac, mac))
    if cursor is not None:
        after_at, after_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Client.created_at > after_at,
                and_(Client.created_at == after_at, Client.client_id > after_id),
            )
        )
    rows = session.execute(
        query.order_by(Client.created_at, Client.client_id).limit(limit + 1)
    ).all()
    items = [DeviceRow(row[0], row[1]) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1].client
        next_cursor = _encode_cursor(last.created_at, last.client_id)
    return Page(items, next_cursor)


def update_device(
    session: Session,
    actor: str,
    client_id: str,
    lot: str | None = None,
    name: str | None = None,
) -> Client:
    """Move a device to another lot and/or rename it (tokens already issued keep their
    `lot` claim until they expire)."""
    new_lot = checked(check_lot, lot) if lot is not None else None
    new_name = checked(check_name, name) if name is not None else None
    client = get_device(session, client_id)
    changes: dict[str, object] = {}
    if new_lot is not None and new_lot != client.lot:
        changes["lot"] = {"from": client.lot, "to": new_lot}
        client.lot = new_lot
    if new_name is not None and new_name != client.name:
        changes["name"] = {"from": client.name, "to": new_name}
        client.name = new_name
    if changes:
        client.updated_at = time.time()
        audit.record(session, actor, "device.update", client_id, {"changes": changes})
        session.commit()
    return client


def _keep_an_operator(session: Session, client_id: str) -> None:
    """Refuse (`LastOperator`) to disable or delete the last enabled operator.

    The enabled operators are locked (`FOR UPDATE` on PostgreSQL; SQLite has one writer), so two
    concurrent requests cannot each disable one of the last two.
    """
    enabled = session.scalars(
        select(Client.client_id)
        .where(Client.kind == OPERATOR, Client.enabled.is_(True), Client.deleted_at.is_(None))
        .with_for_update()
    ).all()
    if set(enabled) <= {client_id}:
        raise LastOperator(client_id)


def _revoke_tokens(client: Client, now: float) -> None:
    """Revoke every token issued so far: the verifier refuses an `iat` before the value set
    here (within the revocation bound).

    `iat` is whole seconds, so the value is the next whole second after both `now` and the
    previous value; the token endpoint gives later tokens at least that `iat` (a second or so
    ahead, well within the verifiers' 30 s leeway), so they are valid at once.
    """
    previous = math.ceil(client.tokens_valid_after or 0)
    client.tokens_valid_after = float(max(math.floor(now), previous) + 1)


def _set_enabled(session: Session, actor: str, client_id: str, enabled: bool, kind: str) -> Client:
    client = get_device(session, client_id, kind)
    now = time.time()
    if not enabled:
        if kind == OPERATOR and client.enabled:
            _keep_an_operator(session, client_id)
        # Its tokens stay revoked after an enable: it gets fresh ones with its secret.
        _revoke_tokens(client, now)
    client.enabled = enabled
    client.updated_at = now
    audit.record(session, actor, f"{kind}.enable" if enabled else f"{kind}.disable", client_id)
    session.commit()
    return client


def disable(session: Session, actor: str, client_id: str, kind: str = DEVICE) -> Client:
    """Refuse the client tokens (invalid_client) until enabled, and revoke those it holds;
    its secrets stay valid. The last enabled operator cannot be disabled (`LastOperator`)."""
    return _set_enabled(session, actor, client_id, False, kind)


def enable(session: Session, actor: str, client_id: str, kind: str = DEVICE) -> Client:
    """Let a disabled client get tokens again with the secret it has."""
    return _set_enabled(session, actor, client_id, True, kind)


def rotate_secret(
    session: Session,
    hasher: SecretHasher,
    actor: str,
    client_id: str,
    grace_s: float,
    now: float | None = None,
    kind: str = DEVICE,
) -> tuple[Client, str]:
    """Give the client a new secret; the current one keeps working for `grace_s` seconds
    (0: not at all, and the tokens issued so far are revoked too: the leaked-secret path) so a
    board can be re-provisioned without downtime.

    Only one previous secret is kept: rotating again within the grace period ends the
    older one's grace at once.
    """
    if grace_s < 0:
        raise InvalidInput("grace_s must not be negative")
    client = get_device(session, client_id, kind)
    if client.issuer is not None:
        raise SecretElsewhere(client_id, client.issuer)
    now = time.time() if now is None else now
    secret = new_client_secret()
    if grace_s > 0:
        client.previous_secret_hash = client.secret_hash
        client.previous_secret_expires_at = now + grace_s
    else:
        client.previous_secret_hash = None
        client.previous_secret_expires_at = None
        _revoke_tokens(client, now)
    client.secret_hash = hasher.hash(secret)
    client.updated_at = now
    audit.record(
        session,
        actor,
        f"{kind}.rotate_secret",
        client_id,
        {"previous_valid_until": client.previous_secret_expires_at},
    )
    session.commit()
    return client, secret


def delete_device(session: Session, actor: str, client_id: str, kind: str = DEVICE) -> None:
    """Soft delete: the client can no longer authenticate (hashes cleared) and a device's MAC
    is free, so the board can be registered again; its readings stay for the lot's history.
    The last enabled operator cannot be deleted (`LastOperator`)."""
    client = get_device(session, client_id, kind)
    if kind == OPERATOR and client.enabled:
        _keep_an_operator(session, client_id)
    detail = {"lot": client.lot, "name": client.name, "mac": client.mac}
    now = time.time()
    client.deleted_at = now
    client.updated_at = now
    client.enabled = False
    client.mac = None
    client.secret_hash = None
    client.previous_secret_hash = None
    client.previous_secret_expires_at = None
    _revoke_tokens(client, now)
    audit.record(session, actor, f"{kind}.delete", client_id, detail)
    session.commit()


def list_audit(
    session: Session,
    limit: int = 100,
    cursor: str | None = None,
    target: str | None = None,
) -> Page[AuditEvent]:
    """Audit events, newest first; `target` narrows to one client."""
    limit = _check_limit(limit)
    query = select(AuditEvent)
    if target is not None:
        query = query.where(AuditEvent.target == target)
    if cursor is not None:
        # ASCII digits within BIGINT: `str.isdigit` also takes '²', and a 30-digit number
        # overflows the database's integer (a 500 instead of a 422).
        if not _AUDIT_CURSOR.search(cursor):
            raise InvalidInput("cursor is not one this server returned")
        query = query.where(AuditEvent.id < int(cursor))
    events = list(session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit + 1)))
    more = len(events) > limit
    events = events[:limit]
    return Page(events, str(events[-1].id) if more else None)
