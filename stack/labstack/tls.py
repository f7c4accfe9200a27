"""Mutual TLS for an instance: serve only callers with a certificate from the lab CA.

labkit (labkit.certs) keeps, in LAB_TLS_DIR, the lab CA, each instance slot's certificate and
key in one file, renewed every few minutes, and mtls.json: whether instances start on mTLS.
An instance decides once, at start; it then re-reads its file when it changes, so a renewal
needs no restart and no handshake sees a half-written file (labkit replaces it in one rename).
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
from pathlib import Path
from typing import Any

import grpc
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .logs import describe_error
from .settings import Settings

log = logging.getLogger("labstack.tls")
RELOAD_EVERY = 1.0  # seconds between looks at the certificate file
PEER = "lab.peer"  # the scope key naming the verified client certificate's common name


class TlsFiles:
    """Where one instance's TLS material lives, and whether it is to serve mTLS."""

    def __init__(self, folder: str, instance_id: str) -> None:
        self.folder = Path(folder)
        self.ca = self.folder / "ca.pem"
        self.bundle = self.folder / "instances" / f"{instance_id}.pem"

    def mtls(self) -> bool:
        try:
            return json.loads((self.folder / "mtls.json").read_text())["mtls"] is True
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def stamp(self) -> float:
        try:
            return os.stat(self.bundle).st_mtime
        except FileNotFoundError:
            return 0.0

    def key_and_chain(self) -> tuple[bytes, bytes]:
        """(private key, certificate) PEM, split from the one file."""
        text = self.bundle.read_bytes()
        start = text.index(b"-----BEGIN PRIVATE KEY-----")
        return text[start:], text[:start]


def files(settings: Settings) -> TlsFiles | None:
    """The instance's TLS files when it is to serve mTLS, else None (plain HTTP or h2c)."""
    if settings.tls_dir is None:
        return None
    found = TlsFiles(settings.tls_dir, settings.instance_id)
    return found if found.mtls() else None


def server_context(tls: TlsFiles) -> ssl.SSLContext:
    """A server context that requires a client certificate signed by the lab CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(tls.ca))
    context.load_cert_chain(str(tls.bundle))
    return context


def keep_fresh(context: ssl.SSLContext, tls: TlsFiles) -> threading.Thread:
    """Load the renewed certificate into `context` whenever the file changes: the next
    handshakes present it (OpenSSL keeps one certificate per context, replaced in place)."""
    def watch() -> None:
        seen = tls.stamp()
        while True:
            threading.Event().wait(RELOAD_EVERY)
            stamp = tls.stamp()
            if stamp == seen:
                continue
            try:
                context.load_cert_chain(str(tls.bundle))
            except (OSError, ssl.SSLError) as exc:  # keep serving the last good one
                log.error("cannot load the renewed certificate",
                          extra={"file": str(tls.bundle), "error": describe_error(exc)})
                continue
            seen = stamp
            log.info("certificate renewed", extra={"file": str(tls.bundle)})

    thread = threading.Thread(target=watch, name="tls-renewal", daemon=True)
    thread.start()
    return thread


def grpc_credentials(tls: TlsFiles) -> grpc.ServerCredentials:
    """gRPC's server credentials requiring a client certificate from the lab CA; gRPC asks
    for the certificate at each handshake, and gets the renewed one once the file changes."""
    ca = tls.ca.read_bytes()
    seen = [tls.stamp()]

    def configuration() -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([tls.key_and_chain()], ca)

    def renewed() -> grpc.ServerCertificateConfiguration | None:
        stamp = tls.stamp()
        if stamp == seen[0]:
            return None  # gRPC keeps the one it has
        try:
            fresh = configuration()
        except (OSError, ValueError) as exc:
            log.error("cannot load the renewed certificate",
                      extra={"file": str(tls.bundle), "error": describe_error(exc)})
            return None
        seen[0] = stamp
        log.info("certificate renewed", extra={"file": str(tls.bundle)})
        return fresh

    return grpc.dynamic_ssl_server_credentials(configuration(), renewed,
                                                require_client_authentication=True)


class PeerNamingProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, telling the app whose certificate the client presented:
    each request's scope gets PEER, the common name the lab CA vouched for."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        name = _common_name(transport.get_extra_info("peercert"))
        app: ASGIApp = self.app

        async def named(scope: Scope, receive: Receive, send: Send) -> None:
            scope[PEER] = name
            await app(scope, receive, send)

        self.app = named


def _common_name(peercert: dict | None) -> str | None:
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def peer_name(scope: Scope) -> str | None:
    """The verified client certificate's common name (None: plain HTTP)."""
    return scope.get(PEER)
