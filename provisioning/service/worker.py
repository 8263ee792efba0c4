"""One worker process of `parkctl serve --workers N`: uvicorn's workers import the app by name.

uvicorn starts each worker as a fresh interpreter (multiprocessing "spawn") and hands it its
configuration by pickling, so neither the app nor the per-settings HTTP protocol class
(`transport.protocol_for`) can travel as objects. The parent validates the settings, prepares
the data directory and the database once, and passes the settings as JSON in
`PARKFLEET_WORKER_SETTINGS`; each worker rebuilds the same app from them here.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from fastapi import FastAPI

from provisioning.service.app import create_app
from provisioning.service.config import Settings
from provisioning.service.web.transport import protocol_for

ENV = "PARKFLEET_WORKER_SETTINGS"
APP = "provisioning.service.worker:create"  # uvicorn's import string (factory=True)
PROTOCOL = "provisioning.service.worker:Protocol"  # uvicorn's `http=` import string


@functools.cache
def settings() -> Settings:
    """The settings the parent process validated (from the environment)."""
    return Settings.model_validate_json(os.environ[ENV])


def create() -> FastAPI:
    """The app of one worker (uvicorn calls this factory in each worker process)."""
    return create_app(settings())


def __getattr__(name: str) -> Any:
    # PEP 562: `Protocol` is built from the settings when uvicorn imports it in the worker.
    if name == "Protocol":
        return protocol_for(settings())
    raise AttributeError(name)
