"""A throwaway certificate authority for ``vaultkey dev`` (never for production).

Creates an ECDSA P-256 CA and a server certificate for 127.0.0.1, ::1 and
localhost, valid for 30 days, using ``cryptography``; the CA's key is kept
(``ca.key``, 0600) so that more certificates can be issued from it, e.g. for
the members of a local etcd cluster (:mod:`vaultkey._dev.cluster`)::

    paths = make_dev_tls(directory)      # ca.pem, ca.key, server.pem, server.key (0600)
    member = issue(paths, directory, "etcd-member", client=True)  # server + client auth
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vaultkey._files import write_private


@dataclass(frozen=True)
class DevTLS:
    ca: Path
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vaultkey dev")])


def make_dev_tls(directory: Path, days: int = 30) -> DevTLS:
    """Write ca.pem, server.pem and server.key into *directory* (reused if present)."""
    out = DevTLS(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    now = dt.datetime.now(dt.UTC)
    if (out.ca.exists() and out.cert.exists() and out.key.exists()
            and (directory / "ca.key").exists()):
        cert = x509.load_pem_x509_certificate(out.cert.read_bytes())
        if cert.not_valid_after_utc > now + dt.timedelta(days=1):
            return out  # still good: keep it, so existing VAULTKEY_CACERT settings work
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("vaultkey dev CA"))
        .issuer_name(_name("vaultkey dev CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    out.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    write_private(directory / "ca.key", _pem(ca_key))
    _write_leaf(ca_cert, ca_key, out.cert, out.key, days, client=False)
    return out


def issue(ca: DevTLS, directory: Path, name: str, *, client: bool = False,
          days: int = 30) -> DevTLS:
    """A certificate for loopback from *ca*'s CA: ``NAME.pem`` and ``NAME.key`` (0600).

    With *client*, it is also good for TLS client authentication (etcd's peers use one
    certificate both ways)."""
    ca_cert = x509.load_pem_x509_certificate(ca.ca.read_bytes())
    ca_key = serialization.load_pem_private_key((ca.ca.parent / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    out = DevTLS(ca.ca, directory / f"{name}.pem", directory / f"{name}.key")
    _write_leaf(ca_cert, ca_key, out.cert, out.key, days, client=client)
    return out


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_leaf(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cert_path: Path,
                key_path: Path, days: int, *, client: bool) -> None:
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ])
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] + ([ExtendedKeyUsageOID.CLIENT_AUTH]
                                                   if client else [])
    cert = (
        x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    write_private(key_path, _pem(key))
