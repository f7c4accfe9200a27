"""Direct callers of an instance, with and without certificates, for notebook 16 and its tests.

    from labkit.demos.mtls import client_certificates, direct_call
    certificates = client_certificates(lab, folder)   # caller -> its certificate file (or None)
    direct_call(lab, "echo", 1, certificates["lab CA, not the gateway"])   # what it is told

The bad certificates are made the way an attacker would: signed by a CA of their own, or a
real one from the lab CA that has expired.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from pathlib import Path

from cryptography import x509

from .. import certs, pki
from ..topology import service

LIFETIME = dt.timedelta(minutes=5)
REFUSED = "refused: closed before any HTTP"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _write(folder: Path, name: str, issued: pki.Issued) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{name}.pem"
    path.write_bytes(issued.cert_pem + issued.key_pem)
    path.chmod(0o600)
    return path


def client_certificates(lab, folder: Path) -> dict[str, Path | None]:
    """Four direct callers: none, another CA's certificate, the lab CA's but expired, and a
    valid one from the lab CA that is not the gateway's (its common name is "learner")."""
    lab_ca = certs.load_ca(lab.backend.state)
    stranger = pki.make_ca("another CA", _now(), dt.timedelta(hours=1))
    return {
        "no certificate": None,
        "another CA's": _write(folder, "stranger", pki.issue(
            stranger, "gateway", (pki.CLIENT,), _now(), LIFETIME)),
        "lab CA's, expired": _write(folder, "expired", pki.issue(
            lab_ca, "gateway", (pki.CLIENT,), _now() - 2 * LIFETIME, LIFETIME)),
        "lab CA's, not the gateway": _write(folder, "learner", pki.issue(
            lab_ca, "learner", (pki.CLIENT,), _now(), LIFETIME)),
    }


def _context(lab, cert: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(lab.security.ca_file))
    if cert is not None:
        context.load_cert_chain(cert)
    return context


def direct_call(lab, name: str, slot: int, cert: Path | None,
                headers: dict[str, str] | None = None) -> str:
    """One GET straight to instance `slot` of `name` over TLS with `cert`: its status line,
    the TLS alert that refused it (e.g. "TLSV13_ALERT_CERTIFICATE_REQUIRED"), or REFUSED."""
    endpoint = service(name).endpoint(slot)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = f"GET / HTTP/1.1\r\nHost: {endpoint.address}\r\n{extra}Connection: close\r\n\r\n"
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as raw, \
                _context(lab, cert).wrap_socket(raw, server_hostname=endpoint.host) as tls:
            tls.sendall(request.encode())
            answer = tls.recv(200)
    except ssl.SSLError as exc:
        return exc.reason or str(exc)  # e.g. TLSV13_ALERT_CERTIFICATE_REQUIRED
    except OSError as exc:
        return type(exc).__name__
    # TLS 1.3: the client's handshake ends before the server checks its certificate, so a
    # refusal shows at the first read; asyncio's TLS (uvicorn) closes without sending the alert
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") or REFUSED


def served_serial(lab, name: str, slot: int, cert: Path) -> str | None:
    """The serial number of the certificate instance `slot` presents now (None: no TLS)."""
    endpoint = service(name).endpoint(slot)
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as raw, \
                _context(lab, cert).wrap_socket(raw, server_hostname=endpoint.host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (ssl.SSLError, OSError):
        return None
    return None if der is None else f"{x509.load_der_x509_certificate(der).serial_number:x}"
