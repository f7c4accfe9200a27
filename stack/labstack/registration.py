"""Self-registration in etcd under a lease that lives only while the instance is ready.

Its keys share one lease and are written in one transaction, so the gateway
and the registry never see half an instance. Where they are is labkit's key layout
(labkit/keyspace.py), passed in the settings (LAB_SERVER_KEYS, LAB_REGISTRY_KEY):

    traefik/http/services/{service}/loadBalancer/servers/{slot}/url -> url
    traefik/http/services/{service}-{version}/loadBalancer/servers/{slot}/url -> url
    registry/{service}/{instance}/{pid}                       -> JSON record

The first puts the instance behind the whole fleet's load balancer, the second behind
its version's (which traffic splits weigh against each other).

Revoking the lease (graceful shutdown) removes them all at once; a crashed or
paused process stops refreshing and they vanish when the TTL runs out.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable

import etcd3gw
from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError, Etcd3Exception
from etcd3gw.lease import Lease

from .logs import describe_error
from .settings import Settings

log = logging.getLogger("labstack.registration")  # leases are logged in hex, as etcdctl shows them

ETCD_TIMEOUT = 1.0  # seconds per etcd request; keeps every refresh well inside the TTL
BACKOFF_FIRST = 0.1  # doubles after each failure, up to the refresh interval
TRANSIENT = (ConnectionFailedError, ConnectionTimeoutError)


def registration_keys(settings: Settings, pid: int) -> tuple[str, ...]:
    """The server keys, then the registry key, with {version} and {pid} filled in."""
    if not settings.server_keys or settings.registry_key is None:
        raise ValueError("registering needs LAB_SERVER_KEYS and LAB_REGISTRY_KEY")
    return tuple(key.format(version=settings.version, pid=pid)
                 for key in (*settings.server_keys, settings.registry_key))


def registry_record(settings: Settings, url: str, metrics_url: str, started_at: float) -> dict:
    return {
        "service": settings.service,
        "instance": settings.instance_id,
        "slot": settings.slot,
        "version": settings.version,
        "address": settings.address,
        "url": url,
        "metrics_url": metrics_url,
        "pid": os.getpid(),
        "started_at": started_at,
    }


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class Registration:
    """Keeps this instance registered while `ready()` is true, from a background thread.

    The lease is refreshed every TTL/3 s. If it is lost (expired during a pause,
    etcd restarted without its data) the keys are written again under a new
    lease. When `ready()` turns false the lease is revoked, so the gateway
    stops routing here without waiting for the TTL; `wake()` makes that (and
    registering again) happen at once rather than at the next refresh.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        url: str,
        metrics_url: str,
        ready: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.ready = ready
        self.keys = registration_keys(settings, os.getpid())
        record = registry_record(settings, url, metrics_url, time.time())
        self.values = (*(url for _ in settings.server_keys), json.dumps(record))
        self._client = etcd3gw.client(
            host=settings.etcd_host, port=settings.etcd_port, timeout=ETCD_TIMEOUT
        )
        self._lease: Lease | None = None
        self._lock = threading.Lock()  # serialises lease changes between the thread and deregister
        self._stop = threading.Event()
        self._wake = threading.Event()  # ends the wait between two rounds of the loop
        self._thread = threading.Thread(target=self._run, name="registration", daemon=True)
        self._started = 0.0

    def start(self) -> None:
        """Register (retrying until etcd answers) and keep the lease alive, in the background."""
        self._started = time.monotonic()
        self._thread.start()

    def wake(self) -> None:
        """Readiness may have changed: act on it now."""
        self._wake.set()

    def deregister(self) -> None:
        """Revoke the lease (all keys vanish together) and stop keeping it alive."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            self._withdraw("deregistered")
        self._thread.join(timeout=2 * ETCD_TIMEOUT)

    def _run(self) -> None:
        interval = self.settings.lease_ttl / 3
        backoff = BACKOFF_FIRST
        last_refresh = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                if self._stop.is_set():
                    break
                try:
                    if not self.ready():
                        self._withdraw("withdrawn: instance not ready")
                    elif self._lease is None:
                        self._register()
                    else:
                        self._refresh(last_refresh)
                    last_refresh = time.monotonic()
                    backoff = BACKOFF_FIRST
                    wait = interval
                except Etcd3Exception as exc:
                    log.warning(
                        "etcd request failed",
                        extra={"error": describe_error(exc), "retry_in": backoff},
                    )
                    wait, backoff = backoff, min(backoff * 2, interval)
            self._wake.wait(wait)
            self._wake.clear()  # before the next ready() check, so no change is missed

    def _register(self) -> None:
        lease = self._client.lease(self.settings.lease_ttl)
        puts = [
            {"request_put": {"key": _b64(key), "value": _b64(value), "lease": lease.id}}
            for key, value in zip(self.keys, self.values, strict=True)
        ]
        # One transaction: the Traefik servers and the registry record appear together.
        self._client.transaction({"compare": [], "success": puts, "failure": []})
        self._lease = lease
        log.info(
            "registered",
            extra={
                "lease": f"{lease.id:x}",
                "keys": list(self.keys),
                "ttl": self.settings.lease_ttl,
                "seconds_since_listening": round(time.monotonic() - self._started, 3),
            },
        )

    def _refresh(self, last_refresh: float) -> None:
        lease = self._lease
        assert lease is not None
        try:
            ttl = lease.refresh()
        except TRANSIENT:
            # etcd is unreachable; once a whole TTL has passed the lease is surely gone.
            if time.monotonic() - last_refresh > self.settings.lease_ttl:
                self._lost(lease, "lease expired while etcd was unreachable")
            raise
        if ttl <= 0:
            self._lost(lease, "lease lost")
            self._register()

    def _lost(self, lease: Lease, why: str) -> None:
        log.warning(why + "; registering again", extra={"lease": f"{lease.id:x}"})
        self._lease = None

    def _withdraw(self, why: str) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            return
        try:
            lease.revoke()
            log.info(why, extra={"lease": f"{lease.id:x}", "keys": list(self.keys)})
        except Etcd3Exception as exc:
            log.warning(
                "could not revoke lease; keys expire with its TTL",
                extra={"lease": f"{lease.id:x}", "error": describe_error(exc)},
            )
