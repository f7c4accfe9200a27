"""Where a service's policies live in etcd, and which policy owns each key.

    traefik/http/middlewares/<service>-<policy>/<type>/...     rate-limit, in-flight, ...
    traefik/http/serversTransports/<service>/...               timeout
    traefik/http/services/<service>/loadBalancer/strategy      strategy
    traefik/http/services/<service>/loadBalancer/sticky/...    sticky
    traefik/http/routers/<service>/middlewares/<i>             the router's chain
    traefik/http/routers/<service>-<version>/middlewares/0     auth: the version routers too
    traefik/http/routers/<service>-<gate>/...                  ip-deny, ip-allow: a router
    traefik/http/middlewares/<service>-<gate>/ipAllowList/...  above every other of the
                                                               service, that rejects (403)
"""

from __future__ import annotations

from collections.abc import Mapping

import etcd3gw

from . import keyspace
from .topology import service as known_service

# Router order, outermost first: shed load cheaply before asking the auth service or holding
# a slot, turn away the unauthenticated before they hold one or count for the breaker, fail
# fast before retrying, and retry innermost so each attempt goes to the service itself.
MIDDLEWARES = {
    "rate-limit": "rateLimit",
    "auth": "forwardAuth",
    "in-flight": "inFlightReq",
    "circuit-breaker": "circuitBreaker",
    "retry": "retry",
}
LOAD_BALANCER_POLICIES = ("timeout", "strategy", "sticky")
# Client-address gates. Traefik 3.7 has no deny-list middleware, and a router rule that merely
# leaves a client out answers 404; so a gate is a router of its own matching the clients to
# reject (ClientIP), above the service's other routers (its version routers too), whose one
# middleware is an allow-list that allows nobody: Traefik answers 403 Forbidden.
GATES = ("ip-deny", "ip-allow")
GATE_PRIORITY = 2000  # above gateway.VERSION_ROUTER_PRIORITY
NOBODY = "0.0.0.0/32"  # the gate's allow-list: no client has this source address
POLICY_NAMES = (*GATES, *MIDDLEWARES, *LOAD_BALANCER_POLICIES)
ROUTER = "router"  # owner of the router's middleware list, rewritten with every change
# Authentication must hold on every route of the service: a request with X-Version takes a
# version router (gateway.route_keys), which the main router's chain does not cover.
AUTH = "auth"


def balancer(service: str) -> str:
    return f"{keyspace.balancer(service)}/loadBalancer"


def transport(service: str) -> str:
    return keyspace.transport(service)


def middleware(service: str, policy: str) -> str:
    """The middleware's key prefix (with a trailing '/')."""
    return f"{keyspace.middleware(f'{service}-{policy}')}/"


def router_list(service: str) -> str:
    return f"{keyspace.router(service)}/middlewares/"


def version_routers(service: str) -> list[str]:
    """The routers a request with X-Version takes: one per version of the service."""
    svc = known_service(service)
    return [svc.version_service(v) for v in svc.versions]


def version_router_lists(service: str) -> list[str]:
    """The middleware lists of the service's version routers (with a trailing '/')."""
    return [router_list(name) for name in version_routers(service)]


def version_routers_auth(service: str) -> dict[str, str]:
    """The keys that put the service's auth middleware on each of its version routers."""
    return {f"{prefix}0": f"{service}-{AUTH}" for prefix in version_router_lists(service)}


def gate_router(service: str, gate: str) -> str:
    """The gate's router key prefix (with a trailing '/')."""
    return f"{keyspace.router(f'{service}-{gate}')}/"


def prefixes(service: str) -> dict[str, str]:
    """Key prefix -> the policy that owns the keys under it."""
    owners = {middleware(service, p): p for p in (*GATES, *MIDDLEWARES)}
    owners.update({gate_router(service, g): g for g in GATES})
    owners.update(dict.fromkeys(version_router_lists(service), AUTH))
    owners.update({
        # the transport itself and the load balancers' reference to it are the gateway's
        # (labkit.gateway.route_keys), its TLS labkit.certs'
        f"{transport(service)}/forwardingTimeouts/": "timeout",
        middleware(service, "timeout"): "timeout",
        f"{balancer(service)}/strategy": "strategy",
        f"{balancer(service)}/sticky/": "sticky",
        router_list(service): ROUTER,
    })  # fmt: skip
    return owners


def timeout_witness(service: str) -> str:
    """A key written with the timeouts, that Traefik's API shows: the serversTransport they
    go in is not in the API, so a change of them alone could not be read back. It belongs to
    a middleware that no router uses (it never acts); Traefik applies a provider's
    configuration at once, so when the witness shows, the timeouts are in force too."""
    return f"{middleware(service, 'timeout')}/headers/customRequestHeaders/X-Lab-Timeouts"


def owner(service: str, key: str) -> str | None:
    return next((p for pre, p in prefixes(service).items() if key.startswith(pre)), None)


def read(etcd: etcd3gw.Etcd3Client, service: str) -> dict[str, str]:
    """Every key the policies own for this service, including the router's middleware list."""
    state: dict[str, str] = {}
    for prefix in prefixes(service):
        for value, meta in etcd.get_prefix(prefix):
            state[meta["key"].decode()] = value.decode()
    return state


def replace(service: str, before: dict[str, str], policy: str,
            keys: dict[str, str]) -> dict[str, str]:
    """`before` with one policy's keys replaced by `keys` (none: removed), and the router's
    middleware list re-numbered in MIDDLEWARES order."""
    kept = {k: v for k, v in before.items() if owner(service, k) not in (policy, ROUTER)}
    after = {**kept, **keys}
    present = {owner(service, k) for k in after}
    chain = [p for p in MIDDLEWARES if p in present]
    after.update({f"{router_list(service)}{i}": f"{service}-{p}" for i, p in enumerate(chain)})
    return after


def chain(service: str, state: Mapping[str, str]) -> list[str]:
    """The router's middlewares as `state` lists them, in order, as Traefik names them."""
    listed = {int(k.rsplit("/", 1)[1]): v for k, v in state.items()
              if k.startswith(router_list(service))}  # fmt: skip
    return [listed[i] + "@etcd" for i in sorted(listed)]
