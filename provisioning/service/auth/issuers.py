"""Signing keys of the external authorization servers the service trusts (`--trust-issuer`).

Each issuer's keys come from its metadata (OpenID Connect Discovery 1.0 §4
`/.well-known/openid-configuration`, else RFC 8414 §3 `/.well-known/oauth-authorization-server`)
and the `jwks_uri` it names. The metadata must name the issuer exactly as configured (Discovery
§4.3, RFC 8414 §3.3), and the `jwks_uri` obeys the issuer's own rule (https, or http on loopback).

Fetching stays off the request path and cannot be turned into a flood:
- a background task fetches at start, then every `REFRESH_S` (every `RETRY_S` while failing);
- a token naming an unknown `kid` may trigger one fetch, at most once per `REFETCH_MIN_S` per
  issuer; requests waiting meanwhile share that one fetch, later ones are refused at once (so a
  stream of made-up `kid`s costs one fetch a minute);
- the scheduled refresh is skipped when any fetch happened within the last `REFETCH_MIN_S`, so
  an issuer sees at most about two fetches a minute from one process whatever tokens arrive;
- a failed fetch keeps the keys already known (tokens keep working while the issuer is down) and
  marks the issuer degraded (`GET /readyz`) until a fetch succeeds.

Only asymmetric keys are kept, each with the algorithms its type allows (RFC 7518 §3, RFC 8037):
RSA (>= 2048 bits) RS256/PS256, EC P-256 ES256, OKP Ed25519 EdDSA; a JWK's `alg`, when given,
narrows that to itself; `use` other than `sig` is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from provisioning.service.config import check_issuer_url
from provisioning.service.metrics import Metrics

log = logging.getLogger(__name__)

REFETCH_MIN_S = 60.0
REFRESH_S = 300.0
RETRY_S = 60.0
FETCH_TIMEOUT_S = 5.0
_MAX_DOCUMENT = 256 * 1024
_MIN_RSA_BITS = 2048
# The algorithms each key type may verify; never `none`, never HMAC (RFC 8725 §3.1, §3.2).
RSA_ALGS = frozenset({"RS256", "PS256"})
ALGS_BY_KEY: dict[tuple[str, str | None], frozenset[str]] = {
    ("RSA", None): RSA_ALGS,
    ("EC", "P-256"): frozenset({"ES256"}),
    ("OKP", "Ed25519"): frozenset({"EdDSA"}),
}
ALGORITHMS = frozenset().union(*ALGS_BY_KEY.values())


@dataclass(frozen=True)
class IssuerKey:
    """One verification key and the algorithms it may be used with."""

    key: Any
    algorithms: frozenset[str]


def key_algorithms(jwk: dict[str, Any]) -> frozenset[str]:
    """The algorithms a JWK may verify: by its `kty` (and `crv`), narrowed by its `alg`; empty
    for anything else (symmetric `oct` keys, other curves, encryption keys)."""
    if jwk.get("use", "sig") != "sig":
        return frozenset()
    kty = jwk.get("kty")
    crv = None if kty == "RSA" else jwk.get("crv")
    allowed = ALGS_BY_KEY.get((str(kty), None if crv is None else str(crv)), frozenset())
    alg = jwk.get("alg")
    if alg is None:
        return allowed
    return allowed & {alg} if isinstance(alg, str) else frozenset()


def parse_jwks(document: Any) -> dict[str, IssuerKey]:
    """The usable keys of a JWKS document by `kid` (keys without a `kid` cannot be chosen by a
    token, so they are skipped; so are keys of other types)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, IssuerKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        algorithms = key_algorithms(jwk)
        if not algorithms:
            continue
        try:
            key: Any
            if jwk["kty"] == "RSA":
                key = RSAAlgorithm.from_jwk(jwk)
                if not isinstance(key, rsa.RSAPublicKey) or key.key_size < _MIN_RSA_BITS:
                    continue  # a private key in a JWKS, or one too short to trust
            elif jwk["kty"] == "EC":
                key = ECAlgorithm.from_jwk(jwk)
            else:
                key = OKPAlgorithm.from_jwk(jwk)
        except (ValueError, KeyError, TypeError, jwt.PyJWTError) as error:
            log.warning("JWKS key %r skipped: %s", jwk.get("kid"), error)
            continue
        keys[jwk["kid"]] = IssuerKey(key, algorithms)
    return keys


def metadata_urls(issuer: str) -> list[str]:
    """Where the issuer's metadata may be: OpenID Discovery appends to the issuer (§4);
    RFC 8414 §3.1 inserts the well-known part between host and path."""
    base = issuer.rstrip("/")
    scheme, _, rest = base.partition("://")
    host, slash, path = rest.partition("/")
    return [
        f"{base}/.well-known/openid-configuration",
        f"{scheme}://{host}/.well-known/oauth-authorization-server{slash}{path}",
    ]


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verification against `ca_file` (a private CA) or the system store."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


class TrustedIssuer:
    """One external issuer's keys; see the module docstring for when they are fetched."""

    def __init__(
        self,
        url: str,
        tls: ssl.SSLContext,
        metrics: Metrics,
        refetch_min_s: float = REFETCH_MIN_S,
    ) -> None:
        self.url = url
        self._tls = tls
        self._metrics = metrics
        self._refetch_min_s = refetch_min_s
        self._keys: dict[str, IssuerKey] = {}
        self._last_fetch = float("-inf")  # monotonic time of the last attempt, any reason
        self._last_on_demand = float("-inf")
        self._inflight: asyncio.Task[None] | None = None
        self.degraded = True  # until the first fetch succeeds
        self.fetches = 0

    def key(self, kid: str) -> IssuerKey | None:
        """The key named `kid` if known now (no fetch)."""
        return self._keys.get(kid)

    async def key_or_refetch(self, kid: str) -> IssuerKey | None:
        """The key named `kid`, fetching the JWKS once more if it is unknown and no on-demand
        fetch happened within `refetch_min_s` (else None at once)."""
        known = self._keys.get(kid)
        if known is not None:
            return known
        if self._inflight is None:
            now = time.monotonic()
            if now - self._last_on_demand < self._refetch_min_s:
                return None
            self._last_on_demand = now
            self._inflight = asyncio.get_running_loop().create_task(self._fetch_shared())
        # Shielded: a request that gives up must not cancel the fetch others wait on.
        await asyncio.shield(self._inflight)
        return self._keys.get(kid)

    async def _fetch_shared(self) -> None:
        try:
            await self.fetch()
        except Exception:  # whatever the issuer sends: never a 500 for a token
            self.degraded = True
            log.exception("keys of issuer %s not fetched; known keys kept", self.url)
        finally:
            self._inflight = None

    async def refresh_due(self) -> None:
        """The scheduled refresh: skipped when a fetch happened recently."""
        if time.monotonic() - self._last_fetch < self._refetch_min_s or self._inflight:
            return
        self._inflight = asyncio.get_running_loop().create_task(self._fetch_shared())
        await asyncio.shield(self._inflight)

    async def fetch(self) -> None:
        """Metadata, then the JWKS; on any failure the known keys stay and the issuer is
        degraded (logged once per failure, never raised)."""
        self._last_fetch = time.monotonic()
        self.fetches += 1
        self._metrics.jwks_fetches.inc()
        try:
            async with httpx.AsyncClient(
                verify=self._tls, timeout=FETCH_TIMEOUT_S, follow_redirects=False
            ) as http:
                jwks_uri = await self._jwks_uri(http)
                self._keys = parse_jwks(await _get_json(http, jwks_uri))
            self.degraded = False
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            self.degraded = True
            log.warning("keys of issuer %s not fetched (%s); known keys kept", self.url, error)

    async def _jwks_uri(self, http: httpx.AsyncClient) -> str:
        for url in metadata_urls(self.url):
            try:
                metadata = await _get_json(http, url)
            except httpx.HTTPStatusError as error:
                if error.response.status_code == 404:
                    continue
                raise
            if not isinstance(metadata, dict) or metadata.get("issuer") != self.url:
                raise ValueError(f"metadata at {url} names another issuer")
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str):
                raise ValueError(f"metadata at {url} has no jwks_uri")
            check_issuer_url(jwks_uri)
            return jwks_uri
        raise ValueError("no metadata (openid-configuration, oauth-authorization-server)")


async def _get_json(http: httpx.AsyncClient, url: str) -> Any:
    response = await http.get(url, headers={"Accept": "application/json"})
    response.raise_for_status()
    if len(response.content) > _MAX_DOCUMENT:
        raise ValueError(f"{url}: document too large")
    return response.json()


class TrustedIssuers:
    """Every trusted issuer by its exact URL, with the background refresh task."""

    def __init__(self, issuers: dict[str, TrustedIssuer], refresh_s: float = REFRESH_S) -> None:
        self.by_url = issuers
        self._refresh_s = refresh_s
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(
        cls, urls: tuple[str, ...], ca_file: Path | None, metrics: Metrics
    ) -> TrustedIssuers:
        """One `TrustedIssuer` per configured URL, sharing one TLS context."""
        tls = tls_context(ca_file) if urls else ssl.create_default_context()
        return cls({url: TrustedIssuer(url, tls, metrics) for url in urls})

    def degraded(self) -> list[str]:
        """The issuers whose last fetch failed (or never succeeded), for `/readyz`."""
        return [url for url, issuer in self.by_url.items() if issuer.degraded]

    def start(self) -> None:
        """Begin the background refresh (called in the app's lifespan, inside its loop)."""
        if self.by_url and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_forever())

    def stop(self) -> None:
        """Stop the background refresh (shutdown)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.gather(*(issuer.refresh_due() for issuer in self.by_url.values()))
            failing = any(issuer.degraded for issuer in self.by_url.values())
            # A little past the interval, so `refresh_due` does not skip it as too recent.
            await asyncio.sleep((RETRY_S if failing else self._refresh_s) + 1.0)
