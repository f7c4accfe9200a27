"""The lab's certificate authority: one CA per lab, and the short-lived certificates it signs.

Pure functions over the `cryptography` library (no files, no clock of their own): the lab's
files and their rotation are labkit.certs. Keys are ECDSA P-256: small, fast to make (a
certificate costs about a millisecond), and spoken by OpenSSL, Go (Traefik) and gRPC alike.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import LabError

CLOCK_SKEW = dt.timedelta(seconds=30)  # a certificate is valid from a little before it is made
SERVER, CLIENT = "server", "client"
USAGES = {SERVER: ExtendedKeyUsageOID.SERVER_AUTH, CLIENT: ExtendedKeyUsageOID.CLIENT_AUTH}


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Microservice Patterns Lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str, now: dt.datetime, lifetime: dt.timedelta) -> Issued:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    _check_lifetime(lifetime)
    key = _key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(_name(common_name))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(ca: Issued, common_name: str, usages: tuple[str, ...], now: dt.datetime,
          lifetime: dt.timedelta, addresses: tuple[str, ...] = (),
          names: tuple[str, ...] = ()) -> Issued:
    """A leaf certificate signed by `ca` for `common_name`, valid for `lifetime` from `now`:
    `usages` among "server" and "client"; a server's `addresses` (IPs) and DNS `names`."""
    _check_lifetime(lifetime)
    unknown = sorted(set(usages) - set(USAGES))
    if not usages or unknown:
        raise LabError(f"a certificate's usages are some of {', '.join(USAGES)}, got {usages!r}")
    ca_cert = ca.certificate
    if now + lifetime > ca_cert.not_valid_after_utc:
        raise LabError(f"the lab CA expires at {ca_cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, "
                       f"before a certificate for {lifetime} would: make a new CA")
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    sans += [x509.DNSName(n) for n in names]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([USAGES[u] for u in usages]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return Issued(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _check_lifetime(lifetime: object) -> None:
    if not isinstance(lifetime, dt.timedelta) or lifetime <= dt.timedelta(0):
        raise LabError(f"a certificate's lifetime must be a positive duration, got {lifetime!r}")


def describe(cert_pem: bytes) -> dict[str, object]:
    """Who a certificate is for, who signed it, and when it is valid (UTC)."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return {
        "subject": cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
        "issuer": cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value,
        "serial": f"{cert.serial_number:x}"[:12],
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
    }
