"""HTTP routes of the ingest component (being built)."""

from __future__ import annotations

from fastapi import FastAPI

from provisioning.context import ServiceContext


def install(app: FastAPI, ctx: ServiceContext) -> None:
    """Add this component's routes and start/stop hooks to `app`."""
