"""The lab CA and its certificates (labkit.pki, labkit.certs): what they vouch for, for how
long, who may read them, and that a TLS handshake refuses what it should."""

from __future__ import annotations

import datetime as dt
import os
import pwd
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from labstack import tls

from labkit import certs, pki
from labkit.errors import LabError
from labkit.topology import SERVICES

NOW = dt.datetime(2026, 12, 1, 6, 0, tzinfo=dt.timezone.utc)
MINUTES = dt.timedelta(minutes=5)


def ca(now: dt.datetime = NOW) -> pki.Issued:
    return pki.make_ca("test CA", now, dt.timedelta(days=1))


def test_a_leaf_is_signed_by_the_ca_for_its_address_and_usage() -> None:
    authority = ca()
    leaf = pki.issue(authority, "echo-2", (pki.SERVER,), NOW, MINUTES, addresses=("127.0.1.2",))
    cert = leaf.certificate
    cert.verify_directly_issued_by(authority.certificate)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.1.2"]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc - NOW == MINUTES
    assert pki.describe(leaf.cert_pem)["issuer"] == "test CA"


def test_bad_requests_are_refused_with_what_is_valid() -> None:
    authority = ca()
    with pytest.raises(LabError, match="usages are some of server, client"):
        pki.issue(authority, "x", ("admin",), NOW, MINUTES)
    with pytest.raises(LabError, match="positive duration"):
        pki.issue(authority, "x", (pki.CLIENT,), NOW, dt.timedelta(0))
    with pytest.raises(LabError, match="the lab CA expires"):
        pki.issue(authority, "x", (pki.CLIENT,), NOW, dt.timedelta(days=2))


def test_the_state_folder_holds_every_identity_for_its_owner_only(tmp_path: Path) -> None:
    certs.prepare(tmp_path)
    folder = certs.folder(tmp_path)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "ca-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(certs.ca_file(tmp_path).stat().st_mode) == 0o644  # public
    bundle = certs.instance_file(tmp_path, "echo-1")
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in bundle.read_bytes()
    assert len(list(folder.glob("instances/*.pem"))) == 10 * len(SERVICES)
    assert certs.generation(tmp_path) == 1 and not certs.mtls(tmp_path)


@pytest.mark.skipif(os.geteuid() != 0, reason="root renews for the programs' user")
def test_a_renewal_by_root_leaves_the_folder_to_its_owner(tmp_path: Path) -> None:
    certs.prepare(tmp_path)
    nobody = pwd.getpwnam("nobody")
    folder = certs.folder(tmp_path)
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    for path in folder.iterdir():
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    with certs._renewing(tmp_path):
        certs.renew(tmp_path)
    # the certs program, as that user, must open the lock and replace what root wrote
    owners = {path.name: path.stat().st_uid for path in folder.iterdir()}
    assert set(owners.values()) == {nobody.pw_uid}, owners


def test_a_renewal_makes_a_new_generation_and_drops_the_one_before_last(tmp_path: Path) -> None:
    certs.prepare(tmp_path)
    first = certs.instance_file(tmp_path, "echo-1").read_bytes()
    assert certs.renew(tmp_path) == 2 and certs.renew(tmp_path) == 3
    assert certs.instance_file(tmp_path, "echo-1").read_bytes() != first
    assert not certs.gateway_client_file(tmp_path, 1).exists()
    assert certs.gateway_client_file(tmp_path, 2).exists()  # Traefik may still use it
    keys = certs.gateway_keys(tmp_path, 3)
    assert keys["traefik/http/serversTransports/echo/certificates/0/certFile"] == str(
        certs.gateway_client_file(tmp_path, 3))
    assert keys["traefik/http/serversTransports/echo/rootCAs/0"] == str(certs.ca_file(tmp_path))


def _serve_once(context: ssl.SSLContext) -> tuple[int, threading.Thread, list]:
    """A TLS server on loopback that accepts one handshake; what it saw lands in the list."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list = []

    def accept() -> None:
        with listener:
            conn, _ = listener.accept()
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    seen.append(tls.getpeercert())
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                seen.append(exc)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread, seen


def _server_context(state: Path) -> ssl.SSLContext:
    """What an echo instance serves mTLS with (labstack.tls), on the lab's files."""
    return tls.server_context(tls.TlsFiles(str(certs.folder(state)), "echo-1"))


def _client_context(state: Path, bundle: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certs.ca_file(state))
    context.check_hostname = False  # the server's IP SAN is 127.x.1.1, we dial 127.0.0.1
    if bundle is not None:
        context.load_cert_chain(bundle)
    return context


def _handshake(state: Path, bundle: Path | None) -> tuple[object, object]:
    """(what the client got, what the server saw) for one handshake."""
    port, thread, seen = _serve_once(_server_context(state))
    client_result: object
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
                _client_context(state, bundle).wrap_socket(raw) as tls:
            client_result = tls.recv(2)
    except (ssl.SSLError, OSError) as exc:
        client_result = exc
    thread.join(5)
    return client_result, seen[0] if seen else None


def test_the_gateways_certificate_is_let_in(tmp_path: Path) -> None:
    certs.prepare(tmp_path)
    got, seen = _handshake(tmp_path, certs.gateway_client_file(tmp_path, 1))
    assert got == b"ok"
    assert isinstance(seen, dict) and ("commonName", "gateway") in seen["subject"][-1]


def test_no_certificate_another_cas_and_an_expired_one_are_refused(tmp_path: Path) -> None:
    certs.prepare(tmp_path)
    other = tmp_path / "other.pem"
    stranger = pki.make_ca("another CA", pki_now(), dt.timedelta(days=1))
    other.write_bytes(_bundle(pki.issue(stranger, "gateway", (pki.CLIENT,), pki_now(), MINUTES)))
    expired = tmp_path / "expired.pem"
    lab_ca = certs.load_ca(tmp_path)
    long_ago = pki_now() - dt.timedelta(minutes=10)
    expired.write_bytes(_bundle(pki.issue(lab_ca, "gateway", (pki.CLIENT,), long_ago, MINUTES)))
    for bundle, reason, alert in (
        (None, "peer did not return a certificate", "alert certificate required"),
        (other, "unable to get local issuer certificate", "alert unknown ca"),
        (expired, "certificate has expired", "alert certificate expired"),
    ):
        got, seen = _handshake(tmp_path, bundle)
        assert isinstance(seen, ssl.SSLError), f"{bundle}: the server let it in: {seen}"
        assert reason in str(seen), f"{bundle}: refused for another reason: {seen}"
        assert alert in str(got), f"{bundle}: the client should get the TLS alert, got {got!r}"


def pki_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _bundle(issued: pki.Issued) -> bytes:
    return issued.cert_pem + issued.key_pem
