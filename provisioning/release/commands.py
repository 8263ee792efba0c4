"""Handlers of `parkctl release ...` (see `provisioning.verbs`)."""

from __future__ import annotations

from pathlib import Path

from provisioning.release import bundle


def keygen(out: Path) -> None:
    """Write a new release key pair and say where each half goes."""
    pub = bundle.keygen(out)
    key = bundle.load_public(pub)
    print(f"Private key: {out} (0600). Keep it offline; it never goes to the service.")
    print(
        f"Public key:  {pub} (key id {bundle.key_id(key)}): give it to `parkctl serve "
        "--release-key`; boards get it from the releases you install."
    )


def build(version: str, key: Path, out: Path | None, rollback: bool) -> None:
    """Build and sign a bundle, then print what it holds."""
    target = bundle.build(version, key, out or Path(f"release-{version}"), rollback)
    manifest = bundle.check_manifest((target / bundle.MANIFEST).read_bytes())
    size = sum(entry["size"] for entry in manifest["files"])
    print(
        f"Built release {version} in {target}: {len(manifest['files'])} modules, {size} bytes, "
        f".mpy v{manifest['mpy']}{', rollback' if rollback else ''}; signed (manifest.sig)."
    )
