"""`AdminClient`: the admin API from Python, for `parkctl device ...` and the fleet tool.

It authenticates like any other client: an operator token for `parkfleet-admin` from the
server's token endpoint (RFC 6749 §4.4, `client_secret_basic`), cached on disk (`tokens.py`)
and reused until shortly before it expires, so a fleet run of hundreds of calls costs one token,
not one per call (the token endpoint allows a burst of 10 per client, then 10 an hour). Every
failure is a `ParkctlError` whose message says what went wrong and never contains the secret.
"""

from __future__ import annotations

import base64
import os
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from provisioning.common.admin_schemas import (
    AuditPage,
    Device,
    DeviceCreated,
    DevicePage,
    LotList,
    LotRecord,
    Operator,
    OperatorCreated,
    OperatorList,
    RecountResult,
    SecretRotated,
)
from provisioning.common.errors import ParkctlError
from provisioning.common.scopes import (
    ADMIN_AUDIENCE,
    COUNTS_READ,
    DEVICES_ADMIN,
    INGEST_AUDIENCE,
)
from provisioning.parkctl.api import advice
from provisioning.parkctl.api.lean_httpx import httpx
from provisioning.parkctl.api.tokens import EXPIRY_MARGIN_S, TokenCache
from provisioning.parkctl.api.transport import send

M = TypeVar("M", bound=BaseModel)


class AdminApiError(ParkctlError):
    """The server refused a request; `status` and `error` are its HTTP status and error code."""

    def __init__(self, message: str, status: int, error: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error


class DeviceNotFoundError(AdminApiError):
    """No live device has that client ID (404)."""


class MacConflictError(AdminApiError):
    """The MAC is already registered (409); `client_id` is that device, to reuse or rotate."""

    def __init__(self, message: str, client_id: str) -> None:
        super().__init__(message, 409, "conflict")
        self.client_id = client_id


def _body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or {} if it has none (a proxy's HTML error page...)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_text(response: httpx.Response) -> tuple[str, str]:
    """(error code, human description) from any error body the service sends."""
    body = _body(response)
    if not body:
        return "", response.reason_phrase or f"HTTP {response.status_code}"
    error = str(body.get("error", ""))
    description = body.get("error_description")
    if not description and isinstance(body.get("detail"), list):  # FastAPI's own 422
        description = "; ".join(
            f"{'.'.join(str(p) for p in item.get('loc', [])[1:])}: {item.get('msg')}"
            for item in body["detail"]
            if isinstance(item, dict)
        )
    return error, str(description or body.get("detail") or error or response.status_code)


class AdminClient:
    """Typed calls to `/admin/...` as the operator `client_id`.

    `verify` is True (system CAs), False, or the path of a CA bundle for a server whose
    certificate a private CA signed. Thread-safe: the fleet tool shares one across jobs.
    """

    def __init__(
        self,
        server: str,
        client_id: str,
        client_secret: str,
        verify: bool | str | Path = True,
        cache: TokenCache | None = None,
        timeout: float = 15.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not server.startswith(("http://", "https://")):
            raise ParkctlError(f"server {server!r} is not an http:// or https:// URL")
        advice.check_base(server)
        self.server = server.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._cache = cache or TokenCache()
        self._cache_key = f"{self.server} {client_id} {ADMIN_AUDIENCE}"
        self._token: tuple[str, float] | None = None  # token, use until
        self._lock = threading.Lock()
        tls: bool | ssl.SSLContext = verify if isinstance(verify, bool) else _ca_context(verify)
        try:
            self._http = httpx.Client(
                base_url=self.server, timeout=timeout, verify=tls, transport=transport
            )
        except httpx.InvalidURL as error:
            raise ParkctlError(f"server {server!r} is not a usable URL: {error}") from None

    def __repr__(self) -> str:
        return f"AdminClient({self.server!r}, client_id={self.client_id!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- the operator token ---

    def _fetch_token(self, audience: str = ADMIN_AUDIENCE) -> tuple[str, float]:
        # RFC 6749 §2.3.1: ID and secret are form-urlencoded before they go into Basic.
        pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
        basic = "Basic " + base64.b64encode(pair.encode()).decode()
        asked_at = time.time()
        form = {"grant_type": "client_credentials", "audience": audience}
        if audience == INGEST_AUDIENCE:
            form["scope"] = COUNTS_READ
        response = self._send("POST", "/oauth/token", data=form, headers={"Authorization": basic})
        if response.status_code != 200:
            error, description = _error_text(response)
            if error == "invalid_client":
                raise ParkctlError(
                    f"the server refused operator {self.client_id}'s credentials "
                    "(check PARK_CLIENT_ID and PARK_CLIENT_SECRET)"
                )
            if error == "invalid_target":
                # The admin audience is always known to the service: it is this client that
                # may not have it.
                raise ParkctlError(advice.not_admin(self.client_id))
            if response.status_code == 429:
                wait = response.headers.get("Retry-After", "?")
                raise ParkctlError(
                    f"token requests for {self.client_id} are rate limited; retry in {wait} s"
                )
            raise ParkctlError(
                f"token request failed: {error or response.status_code}: {description}"
            )
        try:
            body = response.json()
            token, expires_in = str(body["access_token"]), float(body["expires_in"])
        except (ValueError, KeyError, TypeError):
            raise ParkctlError(f"{self.server}/oauth/token sent an unusable response") from None
        wanted = DEVICES_ADMIN if audience == ADMIN_AUDIENCE else COUNTS_READ
        if wanted not in str(body.get("scope", wanted)).split():
            raise ParkctlError(f"client {self.client_id} may not use {wanted}")
        use_until = asked_at + expires_in - min(EXPIRY_MARGIN_S, expires_in / 2)
        self._cache.put(f"{self.server} {self.client_id} {audience}", token, use_until)
        return token, use_until

    def occupancy(self, lot: str) -> dict[str, Any] | None:
        """`GET /v1/lots/{lot}` (the ingestion API's read side, scope counts:read) with the
        same operator's read token (cached like the admin token); None for a lot without
        boards, record or recount."""
        key = f"{self.server} {self.client_id} {INGEST_AUDIENCE}"
        cached = self._cache.get(key, time.time())
        token = cached[0] if cached is not None else self._fetch_token(INGEST_AUDIENCE)[0]
        response = self._send(
            "GET", f"/v1/lots/{quote(lot, safe='')}", headers={"Authorization": f"Bearer {token}"}
        )
        if response.status_code == 404:
            return None
        if not response.is_success:
            _error, description = _error_text(response)
            raise ParkctlError(f"GET /v1/lots/{lot} failed ({response.status_code}): {description}")
        return _body(response)

    def _bearer(self, fresh: bool) -> str:
        """A usable operator token: in memory, else from the disk cache, else a new one."""
        with self._lock:
            now = time.time()
            if fresh:
                self._token = None
                self._cache.put(self._cache_key, None)
            elif self._token is not None and now >= self._token[1]:
                self._token = None
            if self._token is None:
                cached = self._cache.get(self._cache_key, now)
                self._token = cached if cached is not None else self._fetch_token()
            return self._token[0]

    # --- transport ---

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        hint = "give the server's CA with --ca-cert or PARK_CA_CERT"
        return send(self._http, self.server, hint, method, path, **kwargs)

    def _call(self, method: str, path: str, json_body: Any = None, **params: Any) -> httpx.Response:
        query = {k: v for k, v in params.items() if v is not None}
        for attempt in (0, 1):
            headers = {"Authorization": f"Bearer {self._bearer(fresh=attempt == 1)}"}
            response = self._send(method, path, json=json_body, params=query, headers=headers)
            # A 401 means the token is stale (key rotated, server data reset): one new token.
            if response.status_code != 401:
                break
        if response.is_success:
            return response
        error, description = _error_text(response)
        status = response.status_code
        if status == 404 and error == "not_found" and path.startswith("/admin/devices"):
            raise DeviceNotFoundError(description, status, error)
        if status == 404:
            raise AdminApiError(description, status, error)
        if status == 409 and "client_id" not in _body(response):
            raise AdminApiError(description, status, error)
        if status == 409:
            raise MacConflictError(description, str(_body(response).get("client_id", "")))
        if status == 401:
            message = f"the server refused the operator token: {description}"
        elif status == 403:
            message = f"client {self.client_id} lacks scope {DEVICES_ADMIN}: {description}"
        elif status == 422:
            message = f"the server refused the request: {description}"
        else:
            message = f"{method} {path} failed ({status}): {description}"
        raise AdminApiError(message, status, error)

    def _parse(self, model: type[M], response: httpx.Response) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            raise ParkctlError(
                f"{self.server} sent an unexpected {model.__name__} (is it a parkfleet server?)"
            ) from None

    # --- the admin API ---

    def call_json(self, method: str, path: str, body: Any = None, **params: Any) -> dict[str, Any]:
        """An admin API call whose answer is a JSON object (releases, rollouts); `params` go
        in the query string."""
        return _body(self._call(method, path, body, **params))

    def register_device(self, lot: str, name: str, mac: str | None = None) -> DeviceCreated:
        """Register a board; the result carries its `client_secret` (shown only now).

        Raises `MacConflictError` (with the existing `client_id`) if the MAC is registered.
        """
        body = {"lot": lot, "name": name, **({"mac": mac} if mac is not None else {})}
        return self._parse(DeviceCreated, self._call("POST", "/admin/devices", body))

    def register_external(
        self, lot: str, name: str, client_id: str, issuer: str, mac: str | None = None
    ) -> Device:
        """Record a board whose client lives at the external `issuer` (no secret here).

        Raises `MacConflictError` (with the existing `client_id`) if the MAC is registered.
        """
        body = {"lot": lot, "name": name, "client_id": client_id, "issuer": issuer}
        if mac is not None:
            body["mac"] = mac
        return self._parse(Device, self._call("POST", "/admin/devices", body))

    def service_config(self) -> dict[str, Any]:
        """`GET /admin/config`: the ingest audience and the issuers the service trusts."""
        return self.call_json("GET", "/admin/config")

    def list_devices(
        self,
        lot: str | None = None,
        mac: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> DevicePage:
        """One page of devices, oldest first; pass `next_cursor` back for the next."""
        response = self._call("GET", "/admin/devices", lot=lot, mac=mac, limit=limit, cursor=cursor)
        return self._parse(DevicePage, response)

    def iter_devices(self, lot: str | None = None, page_size: int = 200) -> Iterator[Device]:
        """Every device (of `lot`), following the cursor page by page."""
        cursor: str | None = None
        while True:
            page = self.list_devices(lot=lot, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def get_device(self, client_id: str) -> Device:
        return self._parse(Device, self._call("GET", _device_path(client_id)))

    def find_by_mac(self, mac: str) -> Device | None:
        """The device registered with `mac` (any spelling), or None."""
        items = self.list_devices(mac=mac, limit=1).items
        return items[0] if items else None

    def update_device(
        self, client_id: str, lot: str | None = None, name: str | None = None
    ) -> Device:
        body = {k: v for k, v in (("lot", lot), ("name", name)) if v is not None}
        return self._parse(Device, self._call("PATCH", _device_path(client_id), body))

    def disable(self, client_id: str) -> Device:
        return self._parse(Device, self._call("POST", _device_path(client_id, "disable")))

    def enable(self, client_id: str) -> Device:
        return self._parse(Device, self._call("POST", _device_path(client_id, "enable")))

    def rotate_secret(self, client_id: str, grace_s: int | None = None) -> SecretRotated:
        """A new secret; the old one works until `previous_secret_expires_at` (None: not at
        all). `grace_s` None uses the server's default (24 h), 0 revokes the old one now."""
        body = {"grace_s": grace_s} if grace_s is not None else {}
        response = self._call("POST", _device_path(client_id, "rotate-secret"), body)
        return self._parse(SecretRotated, response)

    def delete_device(self, client_id: str) -> None:
        self._call("DELETE", _device_path(client_id))

    def list_operators(self) -> OperatorList:
        return self._parse(OperatorList, self._call("GET", "/admin/operators"))

    def create_operator(self, name: str) -> OperatorCreated:
        """A new operator; the result carries its `client_secret` (shown only now)."""
        response = self._call("POST", "/admin/operators", {"name": name})
        return self._parse(OperatorCreated, response)

    def set_operator_enabled(self, client_id: str, enabled: bool) -> Operator:
        """Enable or disable an operator (the last enabled one cannot be disabled: 409)."""
        path = _operator_path(client_id, "enable" if enabled else "disable")
        return self._parse(Operator, self._call("POST", path))

    def rotate_operator_secret(self, client_id: str, grace_s: int | None = None) -> SecretRotated:
        """Like `rotate_secret`, for an operator."""
        body = {"grace_s": grace_s} if grace_s is not None else {}
        response = self._call("POST", _operator_path(client_id, "rotate-secret"), body)
        return self._parse(SecretRotated, response)

    def delete_operator(self, client_id: str) -> None:
        self._call("DELETE", _operator_path(client_id))

    def audit(
        self, limit: int = 100, cursor: str | None = None, target: str | None = None
    ) -> AuditPage:
        """Recent audit events, newest first."""
        response = self._call("GET", "/admin/audit", limit=limit, cursor=cursor, target=target)
        return self._parse(AuditPage, response)

    # --- lots ---

    def create_lot(self, name: str, capacity: int | None, label: str | None) -> LotRecord:
        """Give lot `name` a record (409 `AdminApiError` if it has one)."""
        body: dict[str, Any] = {"name": name, "capacity": capacity}
        if label is not None:
            body["label"] = label
        return self._parse(LotRecord, self._call("POST", "/admin/lots", body))

    def list_lots(self) -> LotList:
        """Every lot record, following the cursor page by page."""
        items: list[LotRecord] = []
        cursor: str | None = None
        while True:
            page = self._parse(LotList, self._call("GET", "/admin/lots", limit=500, cursor=cursor))
            items += page.items
            if page.next_cursor is None:
                return LotList(items=items)
            cursor = page.next_cursor

    def get_lot(self, name: str) -> LotRecord:
        return self._parse(LotRecord, self._call("GET", _lot_path(name)))

    def update_lot(self, name: str, changes: dict[str, Any]) -> LotRecord:
        """PATCH the lot: `{"capacity": n or None, "label": s}`, only the keys given."""
        return self._parse(LotRecord, self._call("PATCH", _lot_path(name), changes))

    def delete_lot(self, name: str) -> None:
        self._call("DELETE", _lot_path(name))

    def recount_lot(self, name: str, cars: int) -> RecountResult:
        """Set the lot's baseline to `cars` counted now; the gate boards' flows count from it."""
        return self._parse(
            RecountResult, self._call("POST", _lot_path(name) + "/recount", {"cars": cars})
        )


def _lot_path(name: str) -> str:
    return f"/admin/lots/{quote(name, safe='')}"


def _device_path(client_id: str, action: str | None = None, kind: str = "devices") -> str:
    path = f"/admin/{kind}/{quote(client_id, safe='')}"
    return f"{path}/{action}" if action else path


def _operator_path(client_id: str, action: str | None = None) -> str:
    return _device_path(client_id, action, "operators")


def _ca_context(ca_file: str | Path) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as error:
        raise ParkctlError(f"cannot use CA certificate {ca_file}: {error}") from None


def from_environment(server: str | None = None, ca_cert: str | Path | None = None) -> AdminClient:
    """An `AdminClient` for `server` (else `PARK_SERVER`) with the operator credentials in
    `PARK_CLIENT_ID` and `PARK_CLIENT_SECRET`, the only place the CLI takes a secret from
    (never a flag: command lines are visible to every user in `ps`)."""
    server = server or os.environ.get("PARK_SERVER")
    client_id = os.environ.get("PARK_CLIENT_ID")
    secret = os.environ.get("PARK_CLIENT_SECRET")
    missing = [
        name
        for name, value in (
            ("PARK_SERVER (or --server)", server),
            ("PARK_CLIENT_ID", client_id),
            ("PARK_CLIENT_SECRET", secret),
        )
        if not value
    ]
    if missing:
        raise ParkctlError(
            "operator credentials missing: set "
            + ", ".join(missing)
            + " (`parkctl admin create` makes an operator)"
        )
    assert server and client_id and secret  # narrowed by the check above
    ca = ca_cert or os.environ.get("PARK_CA_CERT")
    return AdminClient(server, client_id, secret, verify=ca or True)
