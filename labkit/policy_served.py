"""Traefik's own view of a service's policies, compared with the keys in etcd."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import httpx

from . import auth, durations, policy_keys
from .errors import LabError
from .gateway import api_get
from .policy_keys import GATES, MIDDLEWARES


class ServedPolicies:
    """Reads a service's router, load balancer and middlewares from Traefik's API."""

    def __init__(self, api: httpx.Client):
        self.api = api

    def errors(self, service: str) -> list[str]:
        """Every error Traefik reports on the router, the load balancer or a middleware."""
        bodies = [self._router(service), self._service(service),
                  *(self._middleware(service, p) for p in (*GATES, *MIDDLEWARES)),
                  *(self._router(f"{service}-{gate}") for gate in GATES),
                  *map(self._router, policy_keys.version_routers(service))]  # fmt: skip
        return [error for body in bodies for error in (body or {}).get("error", [])]

    def difference(self, service: str, state: Mapping[str, str]) -> str | None:
        """What Traefik shows that differs from the keys `state` (None when it matches)."""
        router = self._router(service) or {}
        chain = policy_keys.chain(service, state)
        if router.get("status") != "enabled" or _own(router) != chain:
            return (f"router {service} has middlewares {_own(router)}, "
                    f"expected {chain} (is the etcd provider frozen by a bad key?)")  # fmt: skip
        for policy, kind in MIDDLEWARES.items():
            prefix = policy_keys.middleware(service, policy)
            wanted = {k[len(prefix):].lower(): v for k, v in state.items() if k.startswith(prefix)}
            body = self._middleware(service, policy)
            if not wanted:
                if body is not None:
                    return f"middleware {service}-{policy} is still in force"
                continue
            shown = _flatten({kind: body.get(kind)}) if body else {}
            if not body or body.get("status") != "enabled" or not all(
                _same(v, shown.get(k)) for k, v in wanted.items()
            ):
                return f"middleware {service}-{policy} shows {shown or 'nothing'}"
        problem = self._timeout_difference(service, state)
        if problem is not None:
            return problem
        for gate in GATES:
            problem = self._gate_difference(service, gate, state)
            if problem is not None:
                return problem
        for name in policy_keys.version_routers(service):
            prefix = policy_keys.router_list(name)
            wanted_chain = [v + "@etcd" for k, v in sorted(state.items()) if k.startswith(prefix)]
            shown_chain = _own(self._router(name) or {})
            if shown_chain != wanted_chain:
                return f"router {name} has middlewares {shown_chain}, expected {wanted_chain}"
        balancer = (self._service(service) or {}).get("loadBalancer", {})
        return _balancer_difference(service, state, balancer)

    def _timeout_difference(self, service: str, state: Mapping[str, str]) -> str | None:
        """The timeouts are served when their witness shows (policy_keys.timeout_witness)."""
        wanted = state.get(policy_keys.timeout_witness(service))
        body = self._middleware(service, "timeout")
        if wanted is None:
            return None if body is None else f"the timeouts of {service} are still in force"
        shown = ((body or {}).get("headers") or {}).get("customRequestHeaders", {})
        if (body or {}).get("status") != "enabled" or shown.get("X-Lab-Timeouts") != wanted:
            return f"the timeouts of {service} show {shown or 'nothing'}, expected {wanted}"
        return None

    def _gate_difference(self, service: str, gate: str, state: Mapping[str, str]) -> str | None:
        """A gate is served when its router shows the rule in `state`, enabled, with its
        middleware; and gone when `state` has none."""
        rule = state.get(f"{policy_keys.gate_router(service, gate)}rule")
        router = self._router(f"{service}-{gate}")
        if rule is None:
            return None if router is None else f"router {service}-{gate} is still in force"
        middleware = self._middleware(service, gate) or {}
        if (router is None or router.get("status") != "enabled" or router.get("rule") != rule
                or middleware.get("status") != "enabled"):
            shown = (router or {}).get("rule", "nothing")
            return f"router {service}-{gate} shows {shown}, expected {rule}"
        return None

    def status(self, service: str, policy: str) -> str:
        if policy in MIDDLEWARES:
            body = self._middleware(service, policy)
        else:
            body = self._service(service)
        if body is None:
            return "missing"
        errors = body.get("error", [])
        return body.get("status", "unknown") + (f": {'; '.join(errors)}" if errors else "")

    def _router(self, service: str) -> dict | None:
        return api_get(self.api, f"/api/http/routers/{service}@etcd")

    def _service(self, service: str) -> dict | None:
        return api_get(self.api, f"/api/http/services/{service}@etcd")

    def _middleware(self, service: str, policy: str) -> dict | None:
        return api_get(self.api, f"/api/http/middlewares/{service}-{policy}@etcd")


def _own(router: dict) -> list[str]:
    """The router's middlewares, without those its entry point puts before every router's
    (Traefik's API lists both)."""
    return [m for m in router.get("middlewares", []) if m not in auth.entry_point_middlewares()]


def _balancer_difference(service: str, state: Mapping[str, str], shown: dict) -> str | None:
    # the serversTransport itself is not in Traefik's API: only the service's reference is
    balancer = policy_keys.balancer(service)
    wanted = {
        "strategy": state.get(f"{balancer}/strategy", "wrr"),  # Traefik's default
        # declared with the routes (labkit.gateway.route_keys): the timeouts are in it
        "serversTransport": f"{service}@etcd",
        "sticky": state.get(f"{balancer}/sticky/cookie/name"),
    }
    actual = {
        "strategy": shown.get("strategy"),
        "serversTransport": shown.get("serversTransport"),
        "sticky": shown.get("sticky", {}).get("cookie", {}).get("name"),
    }
    if wanted != actual:
        return f"service {service} shows {actual}, expected {wanted}"
    return None


def _flatten(value: object, prefix: str = "") -> dict[str, str]:
    """Traefik's JSON as lower-case key paths (KV keys are case-insensitive)."""
    items: Iterable[tuple[object, object]]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return {prefix: text}
    flat: dict[str, str] = {}
    for key, item in items:
        flat.update(_flatten(item, f"{prefix}/{key}".lower() if prefix else str(key).lower()))
    return flat


def _same(expected: str, actual: str | None) -> bool:
    if actual is None:
        return expected in ("0", "false")  # Traefik's API leaves out zero values
    try:  # "1m" reads back as "1m0s"
        return abs(durations.seconds(expected) - durations.seconds(actual)) < 1e-9
    except LabError:  # not two durations
        return expected.lower() == actual.lower()
