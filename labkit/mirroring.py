"""Traffic mirroring: copies of live requests to a version, while answers come as before.

Traefik's `mirroring` service sends each request to its main service, whose answer the
client gets, and a copy of `percent`% of them to the mirror, whose answer is dropped:

    traefik/http/services/echo-mirror/mirroring/service           = echo-split
    traefik/http/services/echo-mirror/mirroring/mirrors/0/name    = echo-v2
    traefik/http/services/echo-mirror/mirroring/mirrors/0/percent = 100
    traefik/http/routers/echo/service                             = echo-mirror

The main service is whatever the router sent to before (the whole fleet, or the split),
restored when mirroring stops. All keys go in one etcd transaction and are read back from
Traefik's API; on an error the previous keys are restored.
"""

from __future__ import annotations

import time

import etcd3gw
import httpx

from .errors import LabError
from .gateway import ROOT, api_get
from .kv import transact
from .topology import Service

READBACK_SECONDS = 3.0


def mirror_service(svc: Service) -> str:
    return f"{svc.name}-mirror"


def main_key(svc: Service) -> str:
    """Where the mirroring service names the service whose answers clients get."""
    return f"{ROOT}/http/services/{mirror_service(svc)}/mirroring/service"


def router_key(svc: Service) -> str:
    return f"{ROOT}/http/routers/{svc.name}/service"


def check_percent(percent: object) -> int:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
        raise LabError(f"percent must be a whole number from 1 to 100, got {percent!r}")
    return percent


class Mirrors:
    def __init__(self, etcd: etcd3gw.Etcd3Client, api: httpx.Client):
        self.etcd = etcd
        self.api = api

    def current(self, svc: Service) -> tuple[str, int] | None:
        """(version mirrored to, percent) while mirroring is on, else None."""
        state = self._read(svc)
        if state.get(router_key(svc)) != mirror_service(svc):
            return None
        prefix = f"{ROOT}/http/services/{mirror_service(svc)}/mirroring/mirrors/0/"
        names = {svc.version_service(v): v for v in svc.versions}
        return names[state[prefix + "name"]], int(state[prefix + "percent"])

    def start(self, svc: Service, version: str, percent: int) -> None:
        before = self._read(svc)
        prefix = f"{ROOT}/http/services/{mirror_service(svc)}/mirroring/"
        after = {
            prefix + "service": before.get(router_key(svc), svc.name),
            prefix + "mirrors/0/name": svc.version_service(version),
            prefix + "mirrors/0/percent": str(percent),
            router_key(svc): mirror_service(svc),  # after the service it names
        }
        self._change(svc, before, after)

    def stop(self, svc: Service) -> None:
        before = self._read(svc)
        self._change(svc, before, {router_key(svc): before[main_key(svc)]})

    def _read(self, svc: Service) -> dict[str, str]:
        state = {}
        for prefix in (f"{ROOT}/http/services/{mirror_service(svc)}/", router_key(svc)):
            for value, meta in self.etcd.get_prefix(prefix):
                state[meta["key"].decode()] = value.decode()
        return state

    def _change(self, svc: Service, before: dict[str, str], after: dict[str, str]) -> None:
        transact(self.etcd, before, after)
        problem = self._wait_routed(svc, after[router_key(svc)])
        if problem is not None:
            transact(self.etcd, after, before)
            raise LabError(f"Traefik did not apply the mirroring change for {svc.name}: "
                           f"{problem}; the previous routing was restored")

    def _wait_routed(self, svc: Service, target: str) -> str | None:
        deadline = time.monotonic() + READBACK_SECONDS
        while True:
            try:
                router = api_get(self.api, f"/api/http/routers/{svc.name}@etcd") or {}
                errors = list(router.get("error", []))
                if target == mirror_service(svc):
                    body = api_get(self.api, f"/api/http/services/{target}@etcd") or {}
                    errors += body.get("error", [])
                if errors:
                    return "Traefik reports: " + "; ".join(dict.fromkeys(errors))
                if router.get("service", "").split("@")[0] == target:
                    return None
                problem = f"the router still sends to {router.get('service')}"
            except httpx.HTTPError as exc:
                problem = f"Traefik's API did not answer ({exc})"
            if time.monotonic() >= deadline:
                return f"{problem} after {READBACK_SECONDS:g} s"
            time.sleep(0.02)
