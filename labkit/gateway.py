"""The gateway (Traefik): its routes in etcd, and its live view read back from its API.

Routes are static keys written once at `up`; the servers behind each route are
written by the instances themselves, under their registration lease. Traefik
watches the `traefik/` prefix through its etcd provider and applies changes
live, with no restart.
"""

from __future__ import annotations

import httpx

from . import auth, certs, keyspace, paths
from .errors import LabError
from .kv import etcd_client, put_atomically, transact
from .topology import SERVICES, Service, infra
from .topology import service as known_service
from .waits import wait_for

HEALTH_CHECK_INTERVAL = "1s"
HEALTH_CHECK_TIMEOUT = "500ms"
VERSION_HEADER = "X-Version"
VERSION_ROUTER_PRIORITY = 1000


def health_check_keys(service: Service, balancer: str | None = None) -> dict[str, str]:
    """Traefik's active health check: liveness over HTTP, or the gRPC health protocol.
    `balancer`: one of the service's version load balancers instead of the whole fleet's.
    None for a gRPC service on mTLS: Traefik 3.7 dials gRPC health checks without its
    serversTransport's client certificate, so every instance would be marked down; the
    registry's lease takes a dead one out instead (labkit.security)."""
    if service.protocol == "grpc" and certs.mtls(paths.state_dir()):
        return {}
    prefix = f"{keyspace.balancer(balancer or service.name)}/loadBalancer/healthCheck"
    keys = {f"{prefix}/interval": HEALTH_CHECK_INTERVAL, f"{prefix}/timeout": HEALTH_CHECK_TIMEOUT}
    if service.protocol == "grpc":
        keys[f"{prefix}/mode"] = "grpc"
    else:
        keys[f"{prefix}/path"] = "/health"
    return keys


def route_keys(service: Service) -> dict[str, str]:
    """Host-based router plus an (initially empty), health-checked load-balanced service;
    and per version, a load balancer over its instances only, with a router that a request
    carrying `X-Version: <version>` takes (testers reach a version whatever the split)."""
    # the service's serversTransport: lab.policies.timeout sets its timeouts, labkit.certs its
    # TLS (the lab CA, the gateway's client certificate); declared here so that it exists
    # without either (200 is Traefik's default)
    keys = {f"{keyspace.transport(service.name)}/maxIdleConnsPerHost": "200"}
    # services first: a router naming a missing service is a (transient) Traefik error
    for balancer in (service.name, *map(service.version_service, service.versions)):
        keys[f"{keyspace.balancer(balancer)}/loadBalancer/passHostHeader"] = "true"
        keys[f"{keyspace.balancer(balancer)}/loadBalancer/serversTransport"] = service.name
        keys.update(health_check_keys(service, balancer))
    router = keyspace.router(service.name)
    keys.update({
        f"{router}/rule": f"Host(`{service.host_rule}`)",
        f"{router}/service": service.name,
        f"{router}/entryPoints/0": "web",
    })
    for version in service.versions:
        router = keyspace.router(service.version_service(version))
        keys.update({
            f"{router}/rule": f"Host(`{service.host_rule}`) && "
                              f"Header(`{VERSION_HEADER}`, `{version}`)",
            f"{router}/service": service.version_service(version),
            f"{router}/entryPoints/0": "web",
            # above the plain Host router, whatever rules are added to either later
            f"{router}/priority": str(VERSION_ROUTER_PRIORITY),
        })
    return keys


def server_key(service: Service, slot: int) -> str:
    """Where an instance publishes its URL (under its lease) for Traefik to find."""
    return keyspace.server_key(service.name, slot)


def api_get(api: httpx.Client, path: str) -> dict | None:
    """GET from Traefik's API: the JSON body, or None when it has no such object (404)."""
    response = api.get(path)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


class Gateway:
    """Writes the routes, and reads Traefik's view through one reused API client."""

    def __init__(self, api_url: str | None = None, timeout: float = 2.0):
        self.api = httpx.Client(base_url=api_url or infra().traefik_api.url, timeout=timeout)

    def close(self) -> None:
        """Close the connection to Traefik's API."""
        self.api.close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write_routes(self) -> None:
        # One transaction per service: each is whole on its own, and all of them together
        # pass etcd's limit of 128 operations in one transaction (--max-txn-ops).
        etcd = etcd_client()
        for service in SERVICES.values():
            put_atomically(etcd, route_keys(service))
        put_atomically(etcd, auth.gateway_keys())  # after the auth service it routes to

    def servers(self, service: str) -> dict[str, str]:
        """Server URL -> status ("UP"/"DOWN") as Traefik currently routes to them."""
        body = api_get(self.api, f"/api/http/services/{service}@etcd") or {}
        urls = [s["url"] for s in body.get("loadBalancer", {}).get("servers", [])]
        status = body.get("serverStatus", {})
        return {url: status.get(url, "UP") for url in urls}

    def health_checks(self, name: str, enabled: bool) -> None:
        """Switch Traefik's active health checks on (as declared) or off for every load
        balancer of `service`, in one transaction, and wait until Traefik applies it. Off, only
        the registry takes a dead instance out: when its lease expires. `heal()` restores them."""
        if not isinstance(enabled, bool):
            raise LabError(f"enabled must be True or False, got {enabled!r}")
        service = known_service(name)
        if enabled and not health_check_keys(service):
            raise LabError(f"{service.name} has no active health check on mTLS (see "
                           "labkit.security): its instances leave when their lease does")
        declared: dict[str, str] = {}
        for balancer in (service.name, *map(service.version_service, service.versions)):
            declared.update(health_check_keys(service, balancer))
        etcd = etcd_client()
        if enabled:
            put_atomically(etcd, declared)
        else:
            transact(etcd, declared, {})

        def applied() -> bool:
            shown = api_get(self.api, f"/api/http/services/{service.name}@etcd") or {}
            return ("healthCheck" in shown.get("loadBalancer", {})) == enabled

        wait_for(applied, what=f"Traefik to turn {service.name}'s health checks "
                 f"{'on' if enabled else 'off'}", timeout=5,
                 hint="a malformed key elsewhere under traefik/ freezes Traefik's etcd provider")
