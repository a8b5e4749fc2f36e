"""Self-signed certificates for the tests: one for 127.0.0.1 and localhost, made once per test
process, for the TLS listeners and TLS gateways of the SIP tests; others on request (the SNS
signing certificate of the SMS tests)."""

from __future__ import annotations

import datetime
import ipaddress
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID


def self_signed(
    key: CertificateIssuerPrivateKeyTypes,
    common_name: str,
    *extensions: tuple[x509.ExtensionType, bool],
    days: int = 30,
) -> x509.Certificate:
    """A certificate for `key` signed by itself, valid from yesterday for `days` days."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(key, hashes.SHA256())


def _make(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    addresses = [
        x509.DNSName("localhost"),
        *(x509.IPAddress(ipaddress.ip_address(f"127.0.0.{n}")) for n in range(1, 10)),
    ]
    certificate = self_signed(
        key,
        "chimeproxy test",
        (x509.SubjectAlternativeName(addresses), False),
        (x509.BasicConstraints(ca=True, path_length=None), True),
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


TLS_CERT, TLS_KEY = _make(Path(tempfile.mkdtemp(prefix="chimeproxy-tls-")))
