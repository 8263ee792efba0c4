"""`--idp` refuses what it must before any request leaves the machine: a plain-http issuer off
loopback, an unknown scheme, missing credentials (which never come from the command line)."""

from __future__ import annotations

import os

import pytest

from tools.harness.parkctl import parkctl

DEAD = {"PARK_SERVER": "http://127.0.0.1:9", "PARK_CLIENT_ID": "op", "PARK_CLIENT_SECRET": "x"}


@pytest.mark.parametrize(
    ("idp", "message"),
    [
        ("http://192.0.2.7/realms/x", "must be https:// (plain http:// only to a loopback host)"),
        ("ftp://login.example.com", "give auth0://TENANT_DOMAIN or the issuer URL"),
        ("auth0://tenant.example.com", "Auth0 credentials missing: set PARK_IDP_CLIENT_ID"),
        ("auth0://", "give the tenant's domain"),
    ],
)
def test_idp_refused_before_any_request(idp: str, message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARK_IDP_")}
    done = parkctl("device", "register", "--lot", "north", "--name", "b1", "--idp", idp,
                   env={**env, **DEAD, "COLUMNS": "200"})  # fmt: skip
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_http_issuer_on_loopback_is_accepted_then_unreachable() -> None:
    """Loopback http is allowed (tests, the demo); here nothing listens, which is one message."""
    done = parkctl("device", "register", "--lot", "north", "--name", "b1", "--idp",
                   "http://127.0.0.1:9", env={**os.environ, **DEAD, "COLUMNS": "200"})  # fmt: skip
    assert done.returncode == 1
    assert "cannot reach 127.0.0.1:9" in done.stderr and "Traceback" not in done.stderr
