"""A throwaway PKI for the TLS tests: a test CA, a server cert for localhost, a stranger CA."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass
class TestPKI:
    ca_pem: Path
    ca_der: Path
    stranger_ca_der: Path  # a CA that did not sign the server's certificate
    server_cert: Path
    server_key: Path


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_pki(root: Path, host: str = "localhost") -> TestPKI:
    """Write the CA (PEM and DER), a stranger CA (DER) and a server cert+key for `host` only."""
    root.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _ca("parkfleet test CA")
    _, stranger = _ca("someone else's CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        # No IP address entry on purpose: https://127.0.0.1 must fail the host name check.
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pki = TestPKI(
        ca_pem=root / "ca.pem",
        ca_der=root / "ca.der",
        stranger_ca_der=root / "stranger.der",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
    )
    pki.ca_pem.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.ca_der.write_bytes(ca.public_bytes(serialization.Encoding.DER))
    pki.stranger_ca_der.write_bytes(stranger.public_bytes(serialization.Encoding.DER))
    pki.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.server_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return pki


def main() -> None:
    """`python -m tools.harness.pki DIR [HOST]`: a throwaway CA and a server certificate for
    HOST (default localhost), to try the service with TLS; in the field, your CA's."""
    import sys

    if len(sys.argv) not in (2, 3):
        raise SystemExit("usage: python -m tools.harness.pki DIR [HOST]")
    pki = make_pki(Path(sys.argv[1]), *sys.argv[2:])
    pki.server_key.chmod(0o600)
    print(
        f"CA {pki.ca_pem} (boards and parkctl trust it: --ca-cert), server certificate "
        f"{pki.server_cert} and key {pki.server_key} (parkctl serve --tls-cert, --tls-key); "
        "valid for a day"
    )


if __name__ == "__main__":
    main()
