"""One deployment at a time per service, across notebooks and kernels: a key in etcd.

`labkit/deployments/<service>/lock` is created only if absent (one transaction), under a
lease this process keeps alive while the deployment runs. A second kernel (or a second
call in this one) sees the key and is refused with what holds it; a kernel that dies
mid-deployment stops refreshing, and the lock goes with its lease after LOCK_TTL seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

import etcd3gw
from etcd3gw.exceptions import Etcd3Exception
from etcd3gw.lease import Lease

from .errors import LabError

LOCK_TTL = 5  # seconds; refreshed every LOCK_TTL / 3


def lock_key(service: str) -> str:
    return f"labkit/deployments/{service}/lock"


class DeploymentLock:
    def __init__(self, etcd: etcd3gw.Etcd3Client, service: str, what: str):
        self.etcd = etcd
        self.service = service
        self.what = what
        self._stop = threading.Event()
        self._lease: Lease | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DeploymentLock:
        holder = {"what": self.what, "pid": os.getpid(), "host": socket.gethostname(),
                  "started_at": time.time()}
        lease = self.etcd.lease(LOCK_TTL)
        if not self.etcd.create(lock_key(self.service), json.dumps(holder), lease=lease):
            lease.revoke()
            current = self.in_progress(self.etcd, self.service) or "it has just ended"
            raise LabError(f"refused: a deployment of {self.service} is in progress "
                           f"({current}); wait until it ends, one deployment at a time "
                           "per service")
        self._lease = lease
        self._thread = threading.Thread(target=self._keep_alive, args=(lease,), daemon=True,
                                        name=f"deploy-lock-{self.service}")
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._lease is None:  # __enter__ refused: there is nothing to release
            return
        with contextlib.suppress(Etcd3Exception):  # else the key goes with the lease's TTL
            self._lease.revoke()

    def _keep_alive(self, lease: Lease) -> None:
        while not self._stop.wait(LOCK_TTL / 3):
            try:
                lease.refresh()
            except Etcd3Exception:
                continue  # etcd busy for a moment: the next refresh is still within the TTL

    @staticmethod
    def in_progress(etcd: etcd3gw.Etcd3Client, service: str) -> str | None:
        """What deployment holds the service's lock, in words; None when none does."""
        values = etcd.get(lock_key(service))
        if not values:
            return None
        holder = json.loads(values[0])
        age = time.time() - holder["started_at"]
        return (f"{holder['what']}, started {age:.0f} s ago by pid {holder['pid']} "
                f"on {holder['host']}")
