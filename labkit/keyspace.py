"""The etcd key layout: the one place that says where routes, servers and records live.

    traefik/http/routers/<router>/...                                   routes (labkit, at `up`)
    traefik/http/services/<balancer>/...                                load balancers (labkit)
    traefik/http/services/<balancer>/loadBalancer/servers/<slot>/url    an instance's URL
    registry/<service>/<instance>/<pid>                                 an instance's record

An instance writes its keys under its lease (stack/labstack/registration.py). It does not
import this module: the generated supervisord configuration passes it `instance_keys` as
LAB_SERVER_KEYS and LAB_REGISTRY_KEY, with {version} and {pid} for it to fill in when it
starts (a release file may change its version).
"""

from __future__ import annotations

from typing import NamedTuple

from .topology import Service

TRAEFIK_ROOT = "traefik"  # Traefik's etcd provider reads everything under it (its rootKey)
REGISTRY_ROOT = "registry"
VERSION = "{version}"  # filled in by the instance: the version it runs
PID = "{pid}"  # filled in by the instance: its process id


def router(name: str) -> str:
    """The key under which Traefik router `name` is defined (its rule, service, ...)."""
    return f"{TRAEFIK_ROOT}/http/routers/{name}"


def balancer(name: str) -> str:
    """The key under which Traefik service (load balancer) `name` is defined."""
    return f"{TRAEFIK_ROOT}/http/services/{name}"


def middleware(name: str) -> str:
    """The key under which Traefik middleware `name` is defined."""
    return f"{TRAEFIK_ROOT}/http/middlewares/{name}"


def transport(name: str) -> str:
    """The key under which Traefik serversTransport `name` is defined (e.g. its timeouts)."""
    return f"{TRAEFIK_ROOT}/http/serversTransports/{name}"


def server_key(balancer_name: str, slot: int) -> str:
    """Where instance `slot` publishes its URL behind the load balancer `balancer_name`."""
    return f"{balancer(balancer_name)}/loadBalancer/servers/{slot}/url"


def registry_prefix(service: str | None = None) -> str:
    """Every registry record, or one service's."""
    return f"{REGISTRY_ROOT}/" + (f"{service}/" if service else "")


def registry_key(service: str, instance: str, pid: int | str = PID) -> str:
    return f"{registry_prefix(service)}{instance}/{pid}"


class InstanceKeys(NamedTuple):
    servers: tuple[str, ...]  # each -> the instance's URL
    registry: str  # -> its JSON record


def instance_keys(service: Service, slot: int, version: str = VERSION,
                  pid: int | str = PID) -> InstanceKeys:
    """The keys instance `slot` writes under its lease: its URL behind the whole fleet's load
    balancer and behind its version's (which traffic splits weigh), and its registry record."""
    balancers = (service.name, service.version_service(version))
    return InstanceKeys(tuple(server_key(b, slot) for b in balancers),
                        registry_key(service.name, service.instance_id(slot), pid))
