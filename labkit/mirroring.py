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

from collections.abc import Mapping

import etcd3gw
import httpx

from . import keyspace
from .errors import LabError
from .gateway import api_get
from .readback import ReadBack
from .topology import Service


def mirror_service(svc: Service) -> str:
    return f"{svc.name}-mirror"


def main_key(svc: Service) -> str:
    """Where the mirroring service names the service whose answers clients get."""
    return f"{keyspace.balancer(mirror_service(svc))}/mirroring/service"


def router_key(svc: Service) -> str:
    return f"{keyspace.router(svc.name)}/service"


def check_percent(percent: object) -> int:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 1 <= percent <= 100:
        raise LabError(f"percent must be a whole number from 1 to 100, got {percent!r}")
    return percent


class Mirrors:
    def __init__(self, etcd: etcd3gw.Etcd3Client, api: httpx.Client):
        self.etcd = etcd
        self.api = api
        self.readback = ReadBack(etcd)

    def current(self, svc: Service) -> tuple[str, int] | None:
        """(version mirrored to, percent) while mirroring is on, else None."""
        state = self._read(svc)
        if state.get(router_key(svc)) != mirror_service(svc):
            return None
        prefix = f"{keyspace.balancer(mirror_service(svc))}/mirroring/mirrors/0/"
        names = {svc.version_service(v): v for v in svc.versions}
        return names[state[prefix + "name"]], int(state[prefix + "percent"])

    def start(self, svc: Service, version: str, percent: int) -> None:
        before = self._read(svc)
        prefix = f"{keyspace.balancer(mirror_service(svc))}/mirroring/"
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
        for prefix in (f"{keyspace.balancer(mirror_service(svc))}/", router_key(svc)):
            for value, meta in self.etcd.get_prefix(prefix):
                state[meta["key"].decode()] = value.decode()
        return state

    def _change(self, svc: Service, before: dict[str, str], after: dict[str, str]) -> None:
        self.readback.apply(
            before, after, served=lambda state: self._difference(svc, state),
            errors=lambda: self._errors(svc), what=f"the mirroring change for {svc.name}",
            restored="the previous routing was restored",
        )  # fmt: skip

    def _errors(self, svc: Service) -> list[str]:
        """What Traefik reports on the router and, while it exists, the mirroring service."""
        router = api_get(self.api, f"/api/http/routers/{svc.name}@etcd") or {}
        mirror = api_get(self.api, f"/api/http/services/{mirror_service(svc)}@etcd") or {}
        return [*router.get("error", []), *mirror.get("error", [])]

    def _difference(self, svc: Service, state: Mapping[str, str]) -> str | None:
        router = api_get(self.api, f"/api/http/routers/{svc.name}@etcd") or {}
        if router.get("service", "").split("@")[0] == state.get(router_key(svc)):
            return None
        return f"the router still sends to {router.get('service')}"
