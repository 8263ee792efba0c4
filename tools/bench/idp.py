"""Boards of an external authorization server (node-oidc-provider, tools/harness/oidcprovider.py)
beside built-in boards, on one real service trusting it (`--trust-issuer`):

- single-reading posts/s with the provider's RS256 tokens vs the built-in server's ES256 tokens,
  alternating rounds in one run, each post a fresh seq (really stored); target >= 0.9;
- JWKS fetches the provider sees during FLOOD_S (60 s) of posts whose tokens name random unknown
  `kid`s (each a different one), with a registered board posting among them; target <= 2.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tools.bench.ingest import _row as ingest_row
from tools.bench.ingest import counts_requests, fetch_tokens
from tools.bench.loadgen import build_request
from tools.harness.clients import register_devices, register_operator
from tools.harness.loadrun import measured_load
from tools.harness.oidcprovider import OidcProvider
from tools.harness.server import ServiceProcess

DEVICES = 64
SECONDS = 3.0
ROUNDS = 3
RATIO_TARGET = 0.9
FLOOD_S = 60.0
FLOOD_CONNECTIONS = 16
FLOOD_TOKENS = 20_000
FETCH_TARGET = 2
LOT = "bench-lot"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def made_up_token(issuer: str, audience: str, kid: str) -> str:
    """A token shaped like the provider's, naming key `kid` (which nobody has): refused at the
    key lookup, before any signature check, so a flood costs the verifier only that."""
    header = {"alg": "RS256", "typ": "at+jwt", "kid": kid}
    claims = {"iss": issuer, "aud": audience, "client_id": "x", "sub": "x", "scope": "counts:write"}
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(secrets.token_bytes(256))}"


def _admin(http: httpx.Client, operator: tuple[str, str]) -> dict[str, str]:
    response = http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "audience": "parkfleet-admin"},
        auth=operator,
    )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def external_tokens(service: ServiceProcess, idp: OidcProvider, admin: dict[str, str]) -> list[str]:
    """DEVICES boards registered in the provider (RFC 7591) and in parkfleet; a token each."""
    tokens = []
    with service.client() as http:
        for n in range(DEVICES):
            client = idp.register()
            body = {"lot": LOT, "name": f"ext-{n}", "client_id": client.client_id}
            created = http.post(
                "/admin/devices", json={**body, "issuer": idp.issuer}, headers=admin
            )
            created.raise_for_status()
            tokens.append(idp.token(client))
    return tokens


def _row(metric: str, result: dict[str, Any]) -> dict[str, Any]:
    return ingest_row(metric, result, "idp")


def bench_posts(
    service: ServiceProcess, builtin: list[str], external: list[str]
) -> list[dict[str, Any]]:
    host = f"127.0.0.1:{service.port}"
    rounds = []
    for n in range(ROUNDS):  # alternating, so both see the same machine state
        pair = []
        for tokens in (builtin, external):
            posts = counts_requests(host, tokens, 300, 1, first_seq=n * 1000)
            pair.append(measured_load(service, posts, DEVICES, SECONDS, replay=False))
        rounds.append(pair)
    # Best round of each: noise on a shared machine only ever slows things down.
    best_builtin = max((r[0] for r in rounds), key=lambda r: r["rps"])
    best_external = max((r[1] for r in rounds), key=lambda r: r["rps"])
    ratio = best_external["rps"] / best_builtin["rps"] if best_builtin["rps"] else 0.0
    statuses = set(best_builtin["statuses"]) | set(best_external["statuses"])
    return [
        _row(f"POST /v1/counts 1 reading, built-in ES256 tokens ({DEVICES} boards)", best_builtin),
        {
            **_row(
                f"POST /v1/counts 1 reading, external RS256 tokens ({DEVICES} boards)",
                best_external,
            ),
            "baseline": best_builtin["rps"],
            "ratio": round(ratio, 3),
            "target": f">= {RATIO_TARGET}",
            "ok": ratio >= RATIO_TARGET and statuses == {"200"},
        },
    ]


def bench_flood(service: ServiceProcess, idp: OidcProvider, good: str) -> list[dict[str, Any]]:
    host = f"127.0.0.1:{service.port}"
    body = json.dumps({"readings": [{"seq": 1, "cars": 1}]}).encode()
    requests = []
    for n in range(FLOOD_TOKENS):
        # One board's real post among every 100 (a duplicate seq after the first: still 200).
        token = (
            good if n % 100 == 0 else made_up_token(idp.issuer, idp.audience, secrets.token_hex(8))
        )
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        requests.append(build_request("POST", "/v1/counts", host, headers, body))
    before = idp.stats()["jwks"]
    result = measured_load(service, requests, FLOOD_CONNECTIONS, FLOOD_S, replay=True)
    fetches = idp.stats()["jwks"] - before
    statuses = result["statuses"]
    return [
        {
            "bench": "idp",
            "metric": f"JWKS fetches in a {FLOOD_S:.0f} s flood of unknown kids (1 issuer)",
            "value": fetches,
            "unit": "fetches",
            "statuses": statuses,
            "target": f"<= {FETCH_TARGET}",
            # The real board kept posting through it; every made-up kid was refused.
            "ok": fetches <= FETCH_TARGET and "200" in statuses and "401" in statuses,
        },
        {**_row("flood: refused posts/s (made-up kids) and accepted", result), "unit": "req/s"},
    ]


def run() -> list[dict[str, Any]]:
    """Bench rows: external vs built-in posts, JWKS fetches under a kid flood."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        data = tmp / "data"
        operator = register_operator(data)
        creds = register_devices(data, DEVICES, LOT)
        with OidcProvider(tmp / "idp", alg="RS256") as idp:
            args = [
                "--trust-issuer",
                idp.issuer,
                "--ingest-audience",
                idp.audience,
                "--token-rate-burst",
                "1000000000",
                "--log-level",
                "warning",
            ]
            env = {**os.environ, "PARK_METRICS_PUBLIC": "1"}
            with ServiceProcess(data, extra_args=args, env=env) as service:
                with service.client() as http:
                    admin = _admin(http, operator)
                builtin = fetch_tokens(service.url, creds)
                external = external_tokens(service, idp, admin)
                rows = bench_posts(service, builtin, external)
                rows += bench_flood(service, idp, external[0])
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
