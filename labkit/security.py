"""Mutual TLS between the gateway and the instances, switched on and off live.

    lab.security.mtls(True)     every instance restarts on mTLS, one at a time, its version's
                                only instance covered by a stand-in meanwhile: no request fails
    lab.security.rotate()       renew every certificate now (the `certs` program does it every
                                third of their 5-minute life anyway)
    lab.security.certificates() who holds which certificate, until when

On mTLS an instance answers only a caller with a certificate from the lab CA: the gateway
(its serversTransport, labkit.certs) and Prometheus. A direct call is refused in the TLS
handshake; being on the network is not enough. Off, instances serve plain HTTP and h2c again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from . import certs, durations, pki
from .backends.base import Backend, require_up
from .errors import LabError
from .gateway import Gateway
from .servicelock import every_service
from .topology import SERVICES, Service
from .versions import ReleaseFiles, free_slots

MIN_LIFETIME_S = 30


class Security:
    def __init__(self, backend: Backend, gateway: Gateway, progress: Callable[[str], None]):
        self.backend = backend
        self.gateway = gateway
        self.progress = progress

    @property
    def ca_file(self) -> Path:
        """The lab CA's certificate: what a client of https://<gateway> should trust
        (httpx.Client(verify=ssl.create_default_context(cafile=lab.security.ca_file)))."""
        return certs.ca_file(self.backend.state)

    def mtls(self, on: bool | None = None) -> bool:
        """Whether instances serve mTLS only; with `on`, switch every running instance over
        (a rolling restart, without a failed request) and every instance started later."""
        if on is None:
            return certs.mtls(self.backend.state)
        if not isinstance(on, bool):
            raise LabError(f"mtls takes True (instances serve mTLS only) or False (plain "
                           f"HTTP and h2c), got {on!r}")
        require_up(self.backend)
        grpc = [s for s in SERVICES.values() if s.protocol == "grpc"]
        with every_service(self.backend.state, SERVICES, f"mTLS {'on' if on else 'off'}"):
            if on:  # Traefik's gRPC health checks cannot speak mTLS (labkit.gateway)
                for svc in grpc:
                    self.gateway.health_checks(svc.name, False)
            certs.set_mtls(self.backend.state, on)
            for svc in SERVICES.values():
                self._restart_all(svc)
            if not on:
                for svc in grpc:
                    self.gateway.health_checks(svc.name, True)
        self.progress(f"mTLS {'on' if on else 'off'} for every instance")
        return on

    def rotate(self, lifetime: float | str | None = None) -> pd.DataFrame:
        """Renew every certificate now (instances and Prometheus re-read theirs, the gateway
        switches to its new generation); returns certificates(). `lifetime`: seconds or e.g.
        "2m" instead of the usual 5 minutes (the `certs` program renews them every third of
        the usual lifetime)."""
        life = certs.LEAF_LIFETIME if lifetime is None else _lifetime(lifetime)
        require_up(self.backend)
        generation = certs.rotate(self.backend.state, life)
        self.progress(f"certificates renewed (gateway generation {generation})")
        return self.certificates()

    def certificates(self) -> pd.DataFrame:
        """One row per certificate in force: its file, subject, issuer, serial, validity (UTC)."""
        state = self.backend.state
        generation = certs.generation(state)
        files = [certs.ca_file(state), certs.gateway_file(state, generation),
                 certs.gateway_client_file(state, generation), certs.prometheus_file(state),
                 *sorted(certs.folder(state).glob("instances/*.pem"))]
        rows = [{"file": str(path.relative_to(state)), **pki.describe(path.read_bytes())}
                for path in files if path.exists()]
        return pd.DataFrame(rows, columns=["file", "subject", "issuer", "serial", "not_before",
                                           "not_after"])

    def _restart_all(self, svc: Service) -> None:
        """Restart each running instance of `svc` in place, one at a time; a version with one
        instance gets a stand-in on a spare slot meanwhile, so it never has none."""
        backend = self.backend
        releases = ReleaseFiles(backend)
        active = backend.active_slots(svc)
        for slot in active:
            version = releases.version(svc, slot)
            peers = [s for s in backend.active_slots(svc)
                     if s != slot and releases.version(svc, s) == version]
            spare = None
            if not peers:
                spare = free_slots(backend.active_slots(svc))[0]
                backend.ensure_free(svc, [spare])
                releases.assign(svc, spare, version)
                backend.start_instances(svc, [spare], self.progress)
            backend.stop_instances(svc, [slot], self.progress)
            backend.start_instances(svc, [slot], self.progress)
            if spare is not None:
                backend.stop_instances(svc, [spare], self.progress)
                releases.release_slot(svc, spare)


def _lifetime(value: float | str) -> dt.timedelta:
    longest = certs.LEAF_LIFETIME.total_seconds()
    seconds = durations.seconds(value, "lifetime", positive=True, maximum=longest)
    if seconds < MIN_LIFETIME_S:  # renewals must keep up
        raise LabError(f"lifetime must be {MIN_LIFETIME_S:g} s to {longest:g} s, got {value!r}")
    return dt.timedelta(seconds=seconds)
