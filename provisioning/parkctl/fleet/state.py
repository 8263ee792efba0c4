"""The resumable state of a fleet run: which steps each board has finished.

One JSON file beside the manifest (`MANIFEST.state.json`). Boards are keyed by port and MAC: a
record only counts for the board it was made for, so a different board plugged into the same port
starts afresh. It holds client ids and step names, never a secret. Every update rewrites the file
atomically (temp file, fsync, rename), so a crash or Ctrl-C leaves either the old or the new state.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from provisioning.common.errors import ParkctlError

STEPS = ("register", "flash", "install", "verify")
_VERSION = 1


def default_state_path(manifest: Path) -> Path:
    """`fleet.csv` -> `fleet.state.json` beside it."""
    return manifest.with_name(manifest.stem + ".state.json")


class FleetState:
    """Thread-safe view of the state file; each board thread records its own steps."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._boards: dict[str, dict[str, Any]] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("version") != _VERSION or not isinstance(data.get("boards"), dict):
                    raise ValueError("unknown layout")
            except (OSError, ValueError) as error:
                raise ParkctlError(
                    f"state file {path} is unreadable ({error}); move it away to start afresh"
                ) from None
            self._boards = data["boards"]

    def record(self, port: str) -> dict[str, Any]:
        """A copy of what is known about the board on `port` (empty if nothing)."""
        with self._lock:
            copy: dict[str, Any] = json.loads(json.dumps(self._boards.get(port, {})))
            return copy

    def done(self, port: str, mac: str | None = None) -> list[str]:
        """Finished steps of the board on `port`; none if `mac` shows it is another board."""
        record = self.record(port)
        if mac is not None and record.get("mac") not in (None, mac):
            return []
        return [s for s in STEPS if s in record.get("steps", [])]

    def bind(self, port: str, mac: str) -> None:
        """Note which board is on `port`; forget steps recorded for a different board there."""
        with self._lock:
            record = self._boards.get(port, {})
            if record.get("mac") not in (None, mac):
                record = {}
            record["mac"] = mac
            self._boards[port] = record
            self._save()

    def finish(self, port: str, step: str, **facts: str | int | float | None) -> None:
        """Mark `step` finished for the board on `port`, with non-secret facts (client_id...)."""
        if step not in STEPS:
            raise ValueError(step)
        with self._lock:
            record = self._boards.setdefault(port, {})
            steps = [s for s in record.get("steps", []) if s != step]
            record["steps"] = [s for s in STEPS if s in [*steps, step]]
            record.update(facts)
            record.pop("failed", None)
            record["updated_at"] = round(time.time(), 3)
            self._save()

    def note(self, port: str, **facts: str | None) -> None:
        """Record non-secret facts outside a step (None drops one): the external client a
        registration made before parkfleet recorded it, so a re-run reuses it."""
        with self._lock:
            record = self._boards.setdefault(port, {})
            for key, value in facts.items():
                if value is None:
                    record.pop(key, None)
                else:
                    record[key] = value
            self._save()

    def forget(self, port: str, *steps: str) -> None:
        """Mark `steps` as not done (e.g. a new firmware means flashing again)."""
        with self._lock:
            record = self._boards.setdefault(port, {})
            record["steps"] = [s for s in record.get("steps", []) if s not in steps]
            self._save()

    def fail(self, port: str, step: str, reason: str) -> None:
        """Record the step that failed and why (the reason is an operator message, no secret)."""
        with self._lock:
            record = self._boards.setdefault(port, {})
            record["failed"] = {"step": step, "reason": reason}
            record["updated_at"] = round(time.time(), 3)
            self._save()

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {"version": _VERSION, "boards": self._boards}, indent=2, sort_keys=True
        )
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(payload + "\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
