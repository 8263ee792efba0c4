"""node-oidc-provider (npm `oidc-provider`, a certified OpenID provider) on a free loopback port:
a real, independent authorization server for the external-issuer tests, benchmarks and demo.

The package is installed by `make node` (run by `make test` and `make bench`) from the npm
registry at the version pinned in `tools/harness/oidc/package-lock.json`, into the ignored
`build/node/`. Without Node or that install, `OidcProvider()` raises `ServiceMissing` (a skip on
a user's machine, a failure under CI; see tests/conftest.py).

What the provider is configured with (tools/harness/oidc/provider.mjs):
- the client credentials grant (RFC 6749 §4.4), client authentication `client_secret_basic`
  (or `client_secret_post`, whichever the client registered);
- RFC 7591 dynamic registration at `registration_endpoint` behind the initial access token
  `initial_access_token`, and RFC 7592 management (GET/PUT/DELETE with the registration access
  token);
- RFC 8707 resource indicators: each of `audience` and `other_audience` is a resource whose access
  tokens are RFC 9068 JWTs (`typ` at+jwt, `iss`, `aud` = the resource, `client_id`, `sub`,
  `scope`, `exp`, `iat`, `jti`) with scopes `counts:write` and `counts:read`. A resource indicator
  must be an absolute URI (RFC 8707 §2), so the audiences here are URLs; a token request without
  `resource` gets `audience` (the default resource). The provider grants no scope unless asked
  (RFC 6749 §3.3): ask for `scope=counts:write`.
- signing keys of one algorithm (`alg`: RS256 default, PS256, ES256 or EdDSA), generated here.

Use:
    with OidcProvider(tmp_path / "idp", audience="https://parkfleet.test/ingest") as idp:
        idp.issuer                      # "http://127.0.0.1:PORT" (no trailing slash)
        client = idp.register()         # RFC 7591: RegisteredClient(client_id, client_secret,
                                        #   registration_access_token, registration_client_uri)
        token = idp.token(client)       # a client-credentials access token (JWT) for `audience`
        idp.token(client, resource=idp.other_audience)  # one for another audience
        idp.rotate_keys()               # a new signing key first in the JWKS, the old ones kept
        idp.sign(claims, header)        # any JWT signed with the provider's current private key
        idp.stats()                     # {"jwks": n, "discovery": n} requests served so far
        idp.stop(); idp.start()         # down and up again on the same port (clients are lost)
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, RSAPSSAlgorithm

from tools.harness.net import free_port
from tools.harness.process import ChildProcess
from tools.harness.services import REPO, missing

OIDC_DIR = REPO / "tools" / "harness" / "oidc"
NODE_ROOT = REPO / "build" / "node"
INGEST_AUDIENCE = "https://parkfleet.test/ingest"
OTHER_AUDIENCE = "https://other.test/api"
SCOPES = ("counts:write", "counts:read")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class RegisteredClient:
    """What RFC 7591 §3.2.1 answered for one registration."""

    client_id: str
    client_secret: str
    registration_access_token: str
    registration_client_uri: str


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey

    def private_jwk(self) -> dict[str, Any]:
        """The private JWK as node-oidc-provider's `jwks` configuration wants it."""
        exporter: Any = {
            "RS256": RSAAlgorithm,
            "PS256": RSAPSSAlgorithm,
            "ES256": ECAlgorithm,
            "EdDSA": OKPAlgorithm,
        }[self.alg]
        jwk: dict[str, Any] = json.loads(exporter.to_jwk(self.private))
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


def new_signing_key(alg: str) -> SigningKey:
    """A fresh key for `alg` (RS256/PS256: RSA 2048; ES256: P-256; EdDSA: Ed25519)."""
    private: PrivateKey
    if alg in ("RS256", "PS256"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported algorithm {alg}")
    return SigningKey(uuid.uuid4().hex[:16], alg, private)


def node_binary() -> str:
    """The `node` binary and an installed `oidc-provider`, else `ServiceMissing`."""
    node = shutil.which("node")
    if not node:
        missing("Node.js is not installed (node-oidc-provider needs it)")
    if not (NODE_ROOT / "node_modules" / "oidc-provider" / "package.json").exists():
        missing(f"oidc-provider is not installed in {NODE_ROOT} (run `make node`)")
    return node


class OidcProvider(ChildProcess):
    """node-oidc-provider in a child process on a free loopback port; see the module docstring."""

    def __init__(
        self,
        workdir: Path,
        audience: str = INGEST_AUDIENCE,
        other_audience: str = OTHER_AUDIENCE,
        alg: str = "RS256",
        access_token_ttl_s: int = 600,
    ) -> None:
        self.node = node_binary()
        self.workdir = workdir
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.audience = audience
        self.other_audience = other_audience
        self.alg = alg
        self.access_token_ttl_s = access_token_ttl_s
        self.initial_access_token = uuid.uuid4().hex + uuid.uuid4().hex
        self.keys: list[SigningKey] = [new_signing_key(alg)]  # newest first
        self.log_path = workdir / "oidc-provider.log"
        self._config_path = workdir / "oidc-provider.json"
        workdir.mkdir(parents=True, exist_ok=True)
        self._metadata: dict[str, Any] | None = None

    def start(self) -> Self:
        config = {
            "port": self.port,
            "issuer": self.issuer,
            "initial_access_token": self.initial_access_token,
            "keys": [key.private_jwk() for key in self.keys],
            "resources": {self.audience: self.audience, self.other_audience: self.other_audience},
            "default_resource": self.audience,
            "scopes": list(SCOPES),
            "access_token_ttl_s": self.access_token_ttl_s,
        }
        self._config_path.write_text(json.dumps(config))
        self._config_path.chmod(0o600)  # private keys
        env = {**os.environ, "PARK_NODE_MODULES_ROOT": str(NODE_ROOT)}
        self._spawn(
            "oidc-provider",
            [self.node, str(OIDC_DIR / "provider.mjs"), str(self._config_path)],
            [self.port],
            timeout=30,
            env=env,
        )
        self._metadata = None
        return self

    def metadata(self) -> dict[str, Any]:
        """The provider's OpenID metadata (`/.well-known/openid-configuration`)."""
        if self._metadata is None:
            response = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
            response.raise_for_status()
            self._metadata = response.json()
        return self._metadata

    def register(
        self,
        scope: str = "counts:write",
        auth_method: str = "client_secret_basic",
        name: str = "parkfleet-board",
    ) -> RegisteredClient:
        """Register a client-credentials client by RFC 7591 with the initial access token."""
        response = httpx.post(
            self.metadata()["registration_endpoint"],
            headers={"Authorization": f"Bearer {self.initial_access_token}"},
            json={
                "client_name": name,
                "grant_types": ["client_credentials"],
                "response_types": [],
                "redirect_uris": [],
                "token_endpoint_auth_method": auth_method,
                "scope": scope,
            },
            timeout=10,
        )
        if response.status_code != 201:
            raise RuntimeError(f"registration refused: {response.status_code} {response.text}")
        body = response.json()
        return RegisteredClient(
            body["client_id"],
            body["client_secret"],
            body["registration_access_token"],
            body["registration_client_uri"],
        )

    def token(
        self, client: RegisteredClient, scope: str = "counts:write", resource: str | None = None
    ) -> str:
        """An access token by client credentials (RFC 6749 §4.4) for `resource` (default: the
        ingest audience)."""
        response = httpx.post(
            self.metadata()["token_endpoint"],
            auth=(client.client_id, client.client_secret),
            data={
                "grant_type": "client_credentials",
                "scope": scope,
                "resource": resource or self.audience,
            },
            timeout=10,
        )
        if response.status_code != 200:
            raise RuntimeError(f"token refused: {response.status_code} {response.text}")
        return str(response.json()["access_token"])

    def rotate_keys(self) -> SigningKey:
        """Sign with a new key from now on; the JWKS lists it first and keeps the old ones (as
        a real rotation does, so tokens already issued stay verifiable). No restart."""
        key = new_signing_key(self.alg)
        self.keys.insert(0, key)
        response = httpx.put(
            f"{self.issuer}/_harness/keys",
            json={"keys": [k.private_jwk() for k in self.keys]},
            timeout=10,
        )
        response.raise_for_status()
        return key

    def sign(self, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        """A JWT over `claims` signed with the provider's current private key (for tests that
        need a correctly signed token the provider itself would never issue)."""
        key = self.keys[0]
        headers = {"kid": key.kid, "typ": "at+jwt", **(header or {})}
        return jwt.encode(claims, key.private, algorithm=key.alg, headers=headers)

    def stats(self) -> dict[str, int]:
        """How many JWKS and discovery requests the provider has served since it started."""
        response = httpx.get(f"{self.issuer}/_harness/stats", timeout=10)
        response.raise_for_status()
        return {k: int(v) for k, v in response.json().items()}
