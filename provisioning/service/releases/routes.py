"""Agent releases on the service: the admin API and the boards' downloads.

    POST /admin/releases                       devices:admin  publish a signed bundle
    GET  /admin/releases[/{version}]           devices:admin  list, show
    POST /admin/releases/{version}/targets     devices:admin  set boards' target version
    POST /admin/rollouts                       devices:admin  in phases (rollout.py)
    GET  /admin/rollouts[/{id}]                devices:admin  status
    POST /admin/rollouts/{id}/pause|resume|abort[?rollback=true]
    GET  /admin/release-health                 devices:admin  per-release health (health.py)
    GET  /v1/releases/{version}/manifest.json  releases:read  (a device token)
    GET  /v1/releases/{version}/manifest.sig
    GET  /v1/releases/{version}/app/{file}     with HTTP Range (RFC 9110 §14.2), 206/416

A bundle is checked against the release public keys the service is configured with
(`--release-key FILE`, repeatable, or PARK_RELEASE_KEYS, comma-separated): an unsigned,
tampered or unknown-key bundle is refused (422, saying which) and nothing is stored. The boards
check the same signature again themselves (device/ota.py): the service is not trusted with it.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator
from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioning.common import bundle
from provisioning.common.errors import ParkctlError
from provisioning.common.scopes import (
    ADMIN_AUDIENCE,
    DEVICE,
    DEVICES_ADMIN,
    INGEST_AUDIENCE,
    RELEASES_READ,
)
from provisioning.service.auth.deps import require_token
from provisioning.service.auth.principal import Principal
from provisioning.service.context import ServiceContext
from provisioning.service.registry.routes import _ERRORS, AdminRoute, Db
from provisioning.service.registry.service import Conflict, RegistryError
from provisioning.service.releases import rollout
from provisioning.service.releases.schemas import (
    VERSION_PATTERN,
    RolloutStart,
    Targets,
    check_version,
)
from provisioning.service.web.body import MalformedJson, strict_json
from provisioning.store import audit
from provisioning.store.models import Client, DeviceAgent, Release, ReleaseFile, Rollout

Operator = Annotated[Principal, Depends(require_token(ADMIN_AUDIENCE, DEVICES_ADMIN))]
Board = Annotated[Principal, Depends(require_token(INGEST_AUDIENCE, RELEASES_READ))]
RolloutId = Annotated[int, PathParam(ge=1, le=2**63 - 1)]
VersionPath = Annotated[
    str,
    AfterValidator(check_version),
    PathParam(max_length=32, json_schema_extra={"pattern": VERSION_PATTERN}),
]
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
# A rollout's view lists each of its boards: pages of few rollouts.
MAX_ROLLOUTS_PAGE = 100
_RANGE = re.compile(r"bytes=([0-9]{1,9})-([0-9]{0,9})")


_B64 = {"type": "string", "contentEncoding": "base64"}
# What `parkctl release publish` uploads (release/commands.py): all base64.
_BUNDLE_FIELDS = frozenset({"manifest", "signature", "files"})
_BUNDLE_SCHEMA = {
    "type": "object",
    "required": ["manifest", "signature", "files"],
    "additionalProperties": False,
    "properties": {
        "manifest": _B64,
        "signature": _B64,
        "files": {
            "type": "object",
            "maxProperties": 2 * bundle.MAX_FILES,
            "propertyNames": {"pattern": r"^(app|boot)/[a-z0-9_]{1,32}\.(mpy|py|json|der)\Z"},
            "additionalProperties": _B64,
        },
    },
}


class BundleRoute(AdminRoute):
    """The one admin route whose body may be a bundle: up to MAX_BUNDLE_BYTES, refused while
    reading beyond that."""

    max_body = MAX_BUNDLE_BYTES


class BadBundle(RegistryError):
    """An unsigned, tampered or unknown-key bundle, or a malformed upload (422)."""


class NotFound(RegistryError):
    """No such release or device (404)."""

    error = "not_found"
    status = 404


class Exists(Conflict):
    """A release published already, or a rollout action its state refuses (409)."""


def load_keys(spec: str | None) -> list[Any]:
    """The release public keys named by `--release-key`/PARK_RELEASE_KEYS (comma-separated
    PEM files); ParkctlError for a file that is not a P-256 public key."""
    return [bundle.load_public(Path(p.strip())) for p in (spec or "").split(",") if p.strip()]


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BadBundle(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadBundle(f"{what} is not valid base64") from None


def _summary(row: Release) -> dict[str, Any]:
    manifest = bundle.check_manifest(row.manifest)
    return {
        "version": row.version,
        "key_id": row.key_id,
        "rollback": row.rollback,
        "mpy": manifest["mpy"],
        "files": len(manifest["files"]),
        "size": row.size,
        "created_at": row.created_at,
        "created_by": row.created_by,
    }


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """Add the release routes to `app` (the keys are read now: a bad file stops the start)."""
    try:
        keys = load_keys(ctx.settings.release_keys)
    except ParkctlError as error:
        raise ParkctlError(f"--release-key / PARK_RELEASE_KEYS: {error.message}") from None
    admin = APIRouter(prefix="/admin", tags=["releases"], route_class=AdminRoute, responses=_ERRORS)

    async def publish(request: Request, operator: Operator) -> JSONResponse:
        """Publish a bundle: `{"manifest", "signature", "files": {"app/x.mpy": ...}}`, base64."""
        # Read at most MAX_BUNDLE_BYTES and checked as strict JSON by the route (BundleRoute).
        try:
            body = strict_json(await request.body())
        except MalformedJson as error:
            raise BadBundle(f"body is not a JSON bundle: {error}") from None
        if not isinstance(body, dict) or not isinstance(body.get("files"), dict):
            raise BadBundle('body needs "manifest", "signature" and "files"')
        if body.keys() - _BUNDLE_FIELDS:
            raise BadBundle('a bundle has only "manifest", "signature" and "files"')
        manifest = _b64(body.get("manifest"), "manifest")
        signature = _b64(body.get("signature", ""), "signature")
        files = {str(k): _b64(v, f"files.{k}") for k, v in body["files"].items()}
        try:
            checked = bundle.open_bundle(manifest, signature, files, keys, "bundle")
        except ParkctlError as error:
            raise BadBundle(error.message) from None
        with ctx.sessions.begin() as db:
            if db.get(Release, checked.version) is not None:
                raise Exists(f"release {checked.version} is published already")
            row = Release(
                version=checked.version,
                manifest=manifest,
                signature=signature,
                key_id=checked.key_id,
                rollback=bool(checked.manifest["rollback"]),
                size=sum(len(d) for d in checked.files.values()),
                created_at=time.time(),
                created_by=operator.client_id,
            )
            db.add(row)
            db.flush()
            for name, data in checked.files.items():
                db.add(ReleaseFile(version=checked.version, path=name, data=data))
            audit.record(
                db,
                operator.client_id,
                "release.publish",
                checked.version,
                {"key_id": checked.key_id, "rollback": row.rollback},
            )
            summary = _summary(row)
        return JSONResponse(summary, status_code=201)

    admin.add_api_route(
        "/releases",
        publish,
        methods=["POST"],
        status_code=201,
        route_class_override=BundleRoute,
        responses={413: {"description": f"Upload over {MAX_BUNDLE_BYTES} bytes"}},
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _BUNDLE_SCHEMA}},
            }
        },
    )

    @admin.get("/releases")
    def list_releases(_operator: Operator, db: Db) -> dict[str, Any]:
        """Every published release, newest first."""
        rows = db.scalars(select(Release)).all()
        items = sorted(
            (_summary(r) for r in rows),
            key=lambda s: bundle.parse_version(s["version"]),
            reverse=True,
        )
        return {"items": items}

    @admin.get("/releases/{version}")
    def show_release(version: str, _operator: Operator, db: Db) -> dict[str, Any]:
        """One release: its summary, manifest and the boards that run or target it."""
        row = db.get(Release, version)
        if row is None:
            raise NotFound(f"no release {version}")
        boards = db.scalars(
            select(DeviceAgent).where(
                (DeviceAgent.version == version) | (DeviceAgent.target == version)
            )
        ).all()
        return {
            **_summary(row),
            "manifest": bundle.check_manifest(row.manifest),
            "boards": [_agent(a) for a in boards],
        }

    @admin.post("/releases/{version}/targets")
    def set_targets(
        version: VersionPath, body: Targets, operator: Operator, db: Db
    ) -> dict[str, Any]:
        """Make `version` the target of `{"devices": [...]}` or `{"lot": L}`: each board gets
        it in the answer to its next post (state `pending`)."""
        if db.get(Release, version) is None:
            raise NotFound(f"no release {version}")
        ids = target_devices(db, body.devices, body.lot)
        rollout.set_targets(db, ids, version, operator.client_id)
        db.commit()
        return {"version": version, "devices": ids}

    @admin.post("/rollouts", status_code=201)
    def start_rollout(body: RolloutStart, operator: Operator, db: Db) -> dict[str, Any]:
        """`{"version", "devices" | "lot", "phases": [1, "5%", ...], "phase_wait_s",
        "max_crash_rate", "min_online", "parallel", "silence_s"}`; `"canary": n` with
        `"canary_wait_s"` is the one-phase shorthand (`phases` [n, "100%"])."""
        if db.get(Release, body.version) is None:
            raise NotFound(f"no release {body.version}")
        ids = target_devices(db, body.devices, body.lot)
        phases = body.phases
        if phases is None:
            phases = [body.canary, "100%"] if body.canary > 0 else ["100%"]
        wait = body.phase_wait_s
        if wait is None:
            wait = body.canary_wait_s if body.canary_wait_s is not None else 1800.0
        try:
            r = rollout.start(
                db, operator.client_id, body.version, ids, phases, wait, max(body.silence_s, 1),
                body.max_crash_rate, body.min_online, body.parallel,
            )  # fmt: skip
        except ValueError as error:
            raise BadBundle(str(error)) from None
        db.commit()
        return rollout.view(db, r)

    @admin.get("/release-health")
    def release_health(
        _operator: Operator,
        db: Db,
        window_s: Annotated[float, Query(gt=0, le=90 * 86400)] = 86400,
        step_s: Annotated[float, Query(gt=0, le=90 * 86400)] = 3600,
        lot: Annotated[str | None, Query(max_length=64)] = None,
        rollout_id: Annotated[int | None, Query(alias="rollout", ge=1, le=2**63 - 1)] = None,
    ) -> dict[str, Any]:
        """Crash-free hours and the share of boards online per release, per lot and for the
        canary group against the rest of the fleet, over the last `window_s` in steps of
        `step_s` (service/releases/health.py defines them)."""
        from provisioning.service.releases import health

        if window_s / step_s > health.MAX_STEPS:
            raise BadBundle(f"at most {health.MAX_STEPS} steps: make step_s larger")
        return health.report(db, time.time(), window_s, step_s, lot, rollout_id)

    @admin.get("/rollouts")
    def list_rollouts(
        _operator: Operator,
        db: Db,
        limit: Annotated[int, Query(ge=1, le=MAX_ROLLOUTS_PAGE)] = 20,
        cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> dict[str, Any]:
        """Rollouts, newest first, `limit` at a time; follow `next_cursor` (the last id of
        this page: older ones come after it) for more."""
        rollout.tick(db)
        db.commit()
        query = select(Rollout).order_by(Rollout.id.desc()).limit(limit)
        if cursor is not None:
            query = query.where(Rollout.id < cursor)
        rows = db.scalars(query).all()
        more = rows[-1].id if len(rows) == limit else None
        return {"items": [rollout.view(db, r) for r in rows], "next_cursor": more}

    @admin.get("/rollouts/{rollout_id}")
    def show_rollout(rollout_id: RolloutId, _operator: Operator, db: Db) -> dict[str, Any]:
        """One rollout and each of its boards."""
        rollout.tick(db)
        db.commit()
        return rollout.view(db, _rollout(db, rollout_id))

    @admin.post("/rollouts/{rollout_id}/{action}")
    def control_rollout(
        rollout_id: RolloutId,
        action: Literal["pause", "resume", "abort"],
        operator: Operator,
        db: Db,
        rollback: bool = False,
    ) -> dict[str, Any]:
        """pause, resume or abort (`?rollback=true`: the boards that took the release get the
        published rollback release of the version each ran before)."""
        r = _rollout(db, rollout_id)
        try:
            rollout.control(db, operator.client_id, r, action, rollback)
        except ValueError as error:
            raise Exists(str(error)) from None
        db.commit()
        return rollout.view(db, r)

    ticker = rollout.Ticker(ctx.sessions)
    ctx.on_startup.append(ticker.start)
    ctx.on_shutdown.append(ticker.stop)

    app.include_router(admin)

    async def download(request: Request) -> Response:
        board = await require_token(INGEST_AUDIENCE, RELEASES_READ)(request)
        version = request.path_params["version"]
        name = request.path_params["name"]
        with ctx.sessions.begin() as db:
            data = _release_file(db, version, name)
            if data is None:
                return JSONResponse(
                    {"error": "not_found", "error_description": f"no {name} in {version}"}, 404
                )
            if name == "manifest.json" and board.kind == DEVICE:
                _downloading(db, board.client_id, version)
        return _ranged(request.headers.get("range"), data)

    boards = APIRouter(include_in_schema=False)
    for path in ("/v1/releases/{version}/{name}", "/v1/releases/{version}/app/{name}"):
        boards.add_api_route(path, download, methods=["GET"])
    app.include_router(boards)


def _rollout(db: Session, rollout_id: int) -> Rollout:
    r = db.get(Rollout, rollout_id)
    if r is None:
        raise NotFound(f"no rollout {rollout_id} (parkctl rollout status shows the newest)")
    return r


def _release_file(db: Session, version: str, name: str) -> bytes | None:
    if name == "manifest.json" or name == "manifest.sig":
        row = db.get(Release, version)
        if row is None:
            return None
        return row.manifest if name == "manifest.json" else row.signature
    item = db.get(ReleaseFile, (version, name))
    return None if item is None else item.data


def _ranged(header: str | None, data: bytes) -> Response:
    # RFC 9110 §14.2: one byte range "bytes=N-" or "bytes=N-M"; anything else gets the whole.
    kind = "application/octet-stream"
    found = _RANGE.fullmatch(header or "")
    if not found:
        return Response(data, media_type=kind, headers={"Accept-Ranges": "bytes"})
    start = int(found[1])
    end = min(int(found[2]) if found[2] else len(data) - 1, len(data) - 1)
    if start >= len(data) or end < start:
        return Response(b"", status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
    return Response(
        data[start : end + 1],
        status_code=206,
        media_type=kind,
        headers={"Content-Range": f"bytes {start}-{end}/{len(data)}", "Accept-Ranges": "bytes"},
    )


def _agent(row: DeviceAgent) -> dict[str, Any]:
    return {
        "device_id": row.device_id,
        "version": row.version,
        "target": row.target,
        "state": row.state,
        "reason": row.reason,
        "updated_at": row.updated_at,
    }


def target_devices(db: Session, devices: list[str] | None, lot: str | None) -> list[str]:
    """The live devices named by a list of ids or a lot; RegistryError if none or unknown."""
    query = select(Client.client_id).where(Client.kind == DEVICE, Client.deleted_at.is_(None))
    if devices:
        found = set(db.scalars(query.where(Client.client_id.in_(devices))).all())
        missing = [d for d in devices if d not in found]
        if missing:
            raise NotFound(f"no device {missing[0]}")
        return list(dict.fromkeys(devices))
    if lot:
        ids = list(db.scalars(query.where(Client.lot == lot).order_by(Client.client_id)).all())
        if not ids:
            raise NotFound(f"no device in lot {lot}")
        return ids
    raise BadBundle('give "devices" (a list of ids) or "lot"')


def _downloading(db: Session, device_id: str, version: str) -> None:
    row = db.get(DeviceAgent, device_id)
    if row is not None and row.target == version and row.state != "downloading":
        row.state, row.reason, row.updated_at = "downloading", None, time.time()
        audit.record(db, device_id, "agent.downloading", device_id, {"target": version})
