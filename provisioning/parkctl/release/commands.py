"""Handlers of `parkctl release ...` (see `provisioning.parkctl.verbs`)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from provisioning.common import bundle
from provisioning.common.errors import ParkctlError


def keygen(out: Path) -> None:
    """Write a new release key pair and say where each half goes."""
    pub = bundle.keygen(out)
    key = bundle.load_public(pub)
    print(f"Private key: {out} (0600). Keep it offline; it never goes to the service.")
    print(
        f"Public key:  {pub} (key id {bundle.key_id(key)}): give it to `parkctl serve "
        "--release-key`; boards get it from the releases you install."
    )


def build(
    version: str, key: Path, out: Path | None, rollback: bool, source: Path | None = None
) -> None:
    """Build and sign a bundle of the agent in `source` (default: the one that ships with
    parkctl), then print what it holds."""
    target = bundle.build(version, key, out or Path(f"release-{version}"), rollback, source)
    manifest = bundle.check_manifest((target / bundle.MANIFEST).read_bytes())
    size = sum(entry["size"] for entry in manifest["files"])
    print(
        f"Built release {version} in {target}: {len(manifest['files'])} modules, {size} bytes, "
        f".mpy v{manifest['mpy']}{', rollback' if rollback else ''}; signed (manifest.sig)"
        f"{f', from {source}' if source else ''}."
    )


def _client(server: str | None, ca_cert: Path | None) -> Any:
    from provisioning.parkctl.api.client import from_environment

    return from_environment(server, ca_cert)


def publish(directory: Path, server: str | None, ca_cert: Path | None, as_json: bool) -> None:
    """Upload a bundle; the service checks its signature against its release keys."""
    try:
        manifest = (directory / bundle.MANIFEST).read_bytes()
    except OSError:
        raise ParkctlError(f"{directory} has no manifest.json; is it a release bundle?") from None
    sig = directory / bundle.SIGNATURE
    files = {
        f"{sub}/{p.name}": base64.b64encode(p.read_bytes()).decode()
        for sub in ("app", "boot")
        for p in sorted((directory / sub).glob("*"))
        if p.is_file()
    }
    body = {
        "manifest": base64.b64encode(manifest).decode(),
        "signature": base64.b64encode(sig.read_bytes() if sig.is_file() else b"").decode(),
        "files": files,
    }
    with _client(server, ca_cert) as client:
        done = client.call_json("POST", "/admin/releases", body)
    if as_json:
        print(json.dumps(done))
        return
    print(
        f"Published release {done['version']}: {done['files']} modules, {done['size']} bytes, "
        f"signed by key {done['key_id']}."
    )


def list_releases(server: str | None, ca_cert: Path | None, as_json: bool) -> None:
    """Every published release, newest first."""
    with _client(server, ca_cert) as client:
        items = client.call_json("GET", "/admin/releases")["items"]
    if as_json:
        print(json.dumps(items))
        return
    for r in items:
        flag = " rollback" if r["rollback"] else ""
        print(f"{r['version']:<12} {r['files']:>3} files {r['size']:>7} B  key {r['key_id']}{flag}")
    if not items:
        print("No releases published.")


def show(version: str, server: str | None, ca_cert: Path | None, as_json: bool) -> None:
    """One release and the boards that run or target it."""
    with _client(server, ca_cert) as client:
        done = client.call_json("GET", f"/admin/releases/{quote(version, safe='')}")
    if as_json:
        print(json.dumps(done))
        return
    print(
        f"Release {done['version']} (.mpy v{done['mpy']}), key {done['key_id']}, "
        f"{done['files']} modules, {done['size']} bytes"
    )
    for b in done["boards"]:
        why = f" ({b['reason']})" if b["reason"] else ""
        print(f"  {b['device_id']}: runs {b['version']}, target {b['target']}, {b['state']}{why}")


def rollout_start(
    version: str,
    lot: str | None,
    devices: str | None,
    phases: list[int | str] | None,
    phase_wait: float | None,
    canary: int,
    canary_wait: float,
    silence: float,
    max_crash_rate: float,
    min_online: float,
    parallel: int,
    server: str | None,
    ca_cert: Path | None,
    as_json: bool,
) -> None:
    """Start a phased rollout and show it: to `lot` or the comma-separated `devices`, in
    `phases` (default: `canary` boards, then everyone), each run for `phase_wait` seconds
    (default `canary_wait`)."""
    device_ids = [d for d in devices.split(",") if d] if devices else None
    phases = phases or ([canary, "100%"] if canary else ["100%"])
    phase_wait_s = phase_wait if phase_wait is not None else canary_wait
    body: dict[str, object] = {
        "version": version,
        "phases": phases,
        "phase_wait_s": phase_wait_s,
        "silence_s": silence,
        "max_crash_rate": max_crash_rate,
        "min_online": min_online,
        "parallel": parallel,
    }
    # The boards by id or by lot: the one not given is left out (the API refuses null).
    body.update({k: v for k, v in (("lot", lot), ("devices", device_ids)) if v is not None})
    with _client(server, ca_cert) as client:
        done = client.call_json("POST", "/admin/rollouts", body)
    _show_rollout(done, as_json)


def rollout_control(
    action: str,
    rollout_id: int | None,
    server: str | None,
    ca_cert: Path | None,
    as_json: bool,
    rollback: bool = False,
) -> None:
    """status (of `rollout_id` or the newest), pause, resume or abort (with `rollback`)."""
    with _client(server, ca_cert) as client:
        if action != "status":
            query = {"rollback": "true"} if rollback else {}
            done = client.call_json("POST", f"/admin/rollouts/{rollout_id}/{action}", **query)
        elif rollout_id is not None:
            done = client.call_json("GET", f"/admin/rollouts/{rollout_id}")
        else:
            items = client.call_json("GET", "/admin/rollouts")["items"]
            if not items:
                raise ParkctlError("no rollouts yet (parkctl rollout start)")
            done = items[0]
    _show_rollout(done, as_json)


def _show_rollout(r: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(r))
        return
    why = f": {r['reason']}" if r["reason"] else ""
    print(f"Rollout {r['id']} of {r['version']}: {r['state']}{why}")
    phases = "/".join(str(n) for n in r["phases"])
    print(
        f"  phase {r['phase']} of {len(r['phases'])} (boards {phases}), wait "
        f"{r['phase_wait_s']:.0f} s, max crash rate +{r['max_crash_rate']}, "
        f"min online x{r['min_online']}"
    )
    for name, g in (("this phase", r["health"]["phase"]), ("old release", r["health"]["old"])):
        print(
            f"  {name}: {g['boards']} boards, crash rate {g['crash_rate']:.2f}, "
            f"online {g['online_share']:.2f}"
        )
    f = r["failures"]
    print(f"  failures: {f['release']} of the release, {f['service']} downloads shed")
    for b in r["boards"]:
        mark = f"p{b['phase']} "
        reason = f" ({b['reason']})" if b["reason"] else ""
        print(f"  {mark}{b['device_id']}: runs {b['version']}, {b['state']}{reason}")
