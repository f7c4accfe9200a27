"""Resilience policies at the gateway: Traefik middlewares and load-balancer settings, set live.

Every change is validated before anything is written (one malformed key freezes Traefik's
whole etcd provider), then written and read back through labkit.readback: one etcd
transaction, confirmed from Traefik's API, rolled back with Traefik's own error if it does
not take. Where the keys live is labkit.policy_keys; the circuit-breaker grammar is
labkit.breaker_expression.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable

import etcd3gw
import httpx
import pandas as pd
from etcd3gw.lease import Lease

from . import auth, durations, policy_keys
from .breaker_expression import check_expression
from .errors import LabError
from .kv import etcd_client
from .policy_keys import AUTH, GATE_PRIORITY, GATES, MIDDLEWARES, NOBODY, POLICY_NAMES
from .policy_served import ServedPolicies
from .readback import ReadBack
from .topology import infra
from .topology import service as known_service
from .traefik_limits import count as _count
from .traefik_limits import duration as _duration

STRATEGIES = ("wrr", "p2c")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: header and cookie names

Duration = float | str  # seconds, or a Go duration string such as "250ms"
MAX_CLIENTS = 100  # addresses or networks in one gate (each is one ClientIP in a rule)
MAX_TTL_S = 7 * 24 * 3600


# --- validation: everything is checked before a single key is written -----------------------


def _token(what: str, value: object) -> str:
    if not (isinstance(value, str) and _TOKEN.fullmatch(value)):
        raise LabError(f"{what} must be a name of letters, digits and '-', got {value!r}")
    return value


def _source_criterion(per: object, allow_host: bool) -> dict[str, str]:
    """Who shares one budget: each client IP, each value of a header, or (None) everyone."""
    if per == "ip":
        return {"sourceCriterion/ipStrategy/depth": "0"}
    if isinstance(per, str) and per.startswith("header:"):
        return {"sourceCriterion/requestHeaderName": _token("header name", per[len("header:"):])}
    if per is None and allow_host:
        # the router matches one Host, so grouping by host means one budget for the service
        return {"sourceCriterion/requestHost": "true"}
    valid = "'ip', 'header:<Name>'" + (" or None" if allow_host else "")
    raise LabError(f"per must be {valid}, got {per!r}")


def _clients(clients: object) -> list[str]:
    """Addresses or networks ("127.0.0.66", "127.0.0.64/28", IPv6 too), normalised."""
    valid = (f"an IP address or network such as '127.0.0.66' or '127.0.0.64/28', or a list "
             f"of 1 to {MAX_CLIENTS} of them")
    items = [clients] if isinstance(clients, str) else clients
    if not isinstance(items, Iterable) or isinstance(items, bytes | dict):
        raise LabError(f"clients must be {valid}, got {clients!r}")
    items = list(items)
    if not 1 <= len(items) <= MAX_CLIENTS:
        raise LabError(f"clients must be {valid}, got {len(items)} of them")
    networks = []
    for item in items:
        try:
            if not isinstance(item, str):
                raise ValueError
            networks.append(str(ipaddress.ip_network(item.strip(), strict=False)))
        except ValueError:
            raise LabError(f"clients must be {valid}; {item!r} is not one") from None
    return list(dict.fromkeys(networks))


def _ttl_seconds(ttl: object) -> int:
    """An etcd lease's TTL: whole seconds, rounded up."""
    return math.ceil(durations.seconds(ttl, "ttl", positive=True, maximum=MAX_TTL_S))


class Policies:
    """Set, inspect and remove a service's resilience policies at the gateway."""

    def __init__(
        self, etcd: etcd3gw.Etcd3Client | None = None, traefik_api_url: str | None = None,
        gateway_url: str | None = None,
    ):
        self.etcd = etcd if etcd is not None else etcd_client()
        self.api = httpx.Client(base_url=traefik_api_url or infra().traefik_api.url, timeout=2.0)
        self.gateway_url = gateway_url or infra().gateway.url  # where forwardAuth calls go
        self.served = ServedPolicies(self.api)
        self.readback = ReadBack(self.etcd)

    def close(self) -> None:
        """Close the connection to Traefik's API."""
        self.api.close()

    # --- the policies ---

    def timeout(
        self, service: str, response_header: Duration = "2s", dial: Duration | None = None,
        idle: Duration | None = None,
    ) -> None:  # fmt: skip
        """How long the gateway waits for a server (a serversTransport named after the service).
        Durations are seconds or strings such as '250ms'."""
        name = self._service(service)
        settings = {"responseHeaderTimeout": _duration("response_header", response_header)}
        if dial is not None:
            settings["dialTimeout"] = _duration("dial", dial)
        if idle is not None:
            settings["idleConnTimeout"] = _duration("idle", idle)
        transport = policy_keys.transport(name)
        keys = {f"{transport}/forwardingTimeouts/{k}": v for k, v in settings.items()}
        keys[policy_keys.timeout_witness(name)] = ",".join(
            f"{k}={v}" for k, v in sorted(settings.items()))
        self._change(name, "timeout", keys)

    def retry(self, service: str, attempts: int = 3, initial_interval: Duration = "100ms") -> None:
        self._middleware(service, "retry", {
            "attempts": _count("attempts", attempts),
            "initialInterval": _duration("initial_interval", initial_interval),
        })  # fmt: skip

    def circuit_breaker(
        self, service: str, expression: str, check_period: Duration = "1s",
        fallback_duration: Duration = "5s", recovery_duration: Duration = "5s",
    ) -> None:  # fmt: skip
        self._middleware(service, "circuit-breaker", {
            "expression": check_expression(expression),
            "checkPeriod": _duration("check_period", check_period),
            "fallbackDuration": _duration("fallback_duration", fallback_duration),
            "recoveryDuration": _duration("recovery_duration", recovery_duration),
        })  # fmt: skip

    def rate_limit(
        self, service: str, average: int, burst: int = 1, period: Duration = "1s", per: str = "ip"
    ) -> None:
        self._middleware(service, "rate-limit", {
            "average": _count("average", average),
            "burst": _count("burst", burst),
            "period": _duration("period", period),
            **_source_criterion(per, allow_host=False),
        })  # fmt: skip

    def in_flight(self, service: str, amount: int, per: str | None = "ip") -> None:
        """A bulkhead: at most `amount` requests in progress per client (or in all, per=None)."""
        self._middleware(service, "in-flight", {
            "amount": _count("amount", amount),
            **_source_criterion(per, allow_host=True),
        })  # fmt: skip

    def deny(self, service: str, clients: str | Iterable[str],
             ttl: Duration | None = None) -> None:
        """Answer 403 Forbidden to these clients (addresses or networks, e.g. "127.0.0.66"
        or ["127.0.0.64/28"]), whichever route or version they ask for; serve everyone else.
        With `ttl` (seconds or e.g. "30s") the block lifts by itself: its keys live under an
        etcd lease, gone at expiry even if nobody is left to remove them. Replaces the
        service's deny list; remove(service, "ip-deny") lifts it."""
        self._gate(service, "ip-deny", clients, ttl)

    def allow(self, service: str, clients: str | Iterable[str],
              ttl: Duration | None = None) -> None:
        """Serve only these clients (addresses or networks); answer 403 to every other.
        `ttl` and removal as for deny ("ip-allow")."""
        self._gate(service, "ip-allow", clients, ttl)

    def require(self, service: str, scope: str | None) -> None:
        """Let through only requests carrying a valid token that grants `scope` (e.g.
        "echo:read"; lab.token makes one): 401 without a token or with an invalid or expired
        one, 403 with a token lacking the scope, on every route and version of the service.
        The gateway asks the auth service (Traefik's forwardAuth) and passes the verified
        identity on in X-Auth-Subject and X-Auth-Scopes. Fail closed: while the auth service
        cannot answer, protected routes answer 5xx. None removes the requirement."""
        name = self._service(service)
        if name == auth.SERVICE:
            raise LabError(f"{name} cannot require a token: its token endpoint is how a client "
                           "gets one")
        if scope is None:
            self._change(name, AUTH, {})
            return
        prefix = f"{policy_keys.middleware(name, AUTH)}{MIDDLEWARES[AUTH]}"
        keys = {f"{prefix}/{k}": v
                for k, v in auth.forward_auth(scope, self.gateway_url).items()}
        keys.update(policy_keys.version_routers_auth(name))  # after the middleware they name
        self._change(name, AUTH, keys)

    def strategy(self, service: str, strategy: str) -> None:
        if strategy not in STRATEGIES:
            raise LabError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        name = self._service(service)
        self._change(name, "strategy", {f"{policy_keys.balancer(name)}/strategy": strategy})

    def sticky(self, service: str, cookie: str = "lab_sticky") -> None:
        name = self._service(service)
        keys = {f"{policy_keys.balancer(name)}/sticky/cookie/name": _token("cookie", cookie)}
        self._change(name, "sticky", keys)

    def remove(self, service: str, policy_name: str) -> None:
        """Remove one policy (a no-op when it is not set)."""
        name = self._service(service)
        if policy_name not in POLICY_NAMES:
            raise LabError(
                f"unknown policy {policy_name!r}; valid policies: {', '.join(POLICY_NAMES)}"
            )
        self._change(name, policy_name, {})

    def clear(self, service: str) -> None:
        """Remove every policy from the service, in one transaction."""
        name = self._service(service)
        self._apply(name, "all policies", policy_keys.read(self.etcd, name), {})

    def policies(self, service: str) -> pd.DataFrame:
        """What is in force: each policy's settings (from etcd) and status (from Traefik)."""
        name = self._service(service)
        state = policy_keys.read(self.etcd, name)
        rows = []
        for policy in POLICY_NAMES:
            keys = {k: v for k, v in state.items() if policy_keys.owner(name, k) == policy
                    and k != policy_keys.timeout_witness(name)}
            if not keys:
                continue
            if policy in GATES:
                settings = self._gate_settings(name, policy)
            elif policy == AUTH:
                address = next(v for k, v in keys.items() if k.endswith("/address"))
                settings = f"scope={auth.scope_of(address)}"
            else:
                settings = ", ".join(f"{k.rsplit('/', 1)[-1]}={v}" for k, v in sorted(keys.items()))
            rows.append({"policy": policy, "settings": settings,
                         "status": self.served.status(name, policy)})  # fmt: skip
        return pd.DataFrame(rows, columns=["policy", "settings", "status"])

    def _gate_settings(self, service: str, gate: str) -> str:
        """"clients=127.0.0.66/32", and how long the block has left if it expires."""
        rule_key = f"{policy_keys.gate_router(service, gate)}rule"
        found = self.etcd.get(rule_key, metadata=True)
        if not found:  # expired since it was read
            return "expired"
        rule, meta = found[0]
        clients = ", ".join(re.findall(r"ClientIP\(`([^`]+)`\)", rule.decode()))
        lease = int(meta.get("lease", 0))
        left = f", expires in {Lease(lease, self.etcd).ttl()} s" if lease else ""
        return f"clients={clients}{left}"

    # --- writing ---

    @staticmethod
    def _service(name: str) -> str:
        return known_service(name).name

    def _middleware(self, service: str, policy: str, settings: dict[str, str]) -> None:
        name = self._service(service)
        prefix = f"{policy_keys.middleware(name, policy)}{MIDDLEWARES[policy]}"
        self._change(name, policy, {f"{prefix}/{k}": v for k, v in settings.items()})

    def _gate(self, service: str, gate: str, clients: object, ttl: object) -> None:
        name = self._service(service)
        matched = " || ".join(f"ClientIP(`{network}`)" for network in _clients(clients))
        lease_s = None if ttl is None else _ttl_seconds(ttl)
        host = f"Host(`{known_service(name).host_rule}`)"
        router = policy_keys.gate_router(name, gate)
        keys = {
            # the middleware first: a router naming a missing one is a (transient) error
            f"{policy_keys.middleware(name, gate)}ipAllowList/sourceRange/0": NOBODY,
            f"{router}rule": f"{host} && ({matched})" if gate == "ip-deny"
            else f"{host} && !({matched})",
            f"{router}service": name,
            f"{router}entryPoints/0": "web",
            f"{router}priority": str(GATE_PRIORITY),
            f"{router}middlewares/0": f"{name}-{gate}",
        }
        lease = None if lease_s is None else self.etcd.lease(lease_s)
        self._change(name, gate, keys, lease=None if lease is None else lease.id)

    def _change(self, service: str, policy: str, keys: dict[str, str],
                lease: int | None = None) -> None:
        """Replace one policy's keys (none = remove it) and re-number the router's list;
        `lease`: the new keys expire with it."""
        before = policy_keys.read(self.etcd, service)
        after = policy_keys.replace(service, before, policy, keys)
        self._apply(service, policy, before, after,
                    leases=None if lease is None else dict.fromkeys(keys, lease))

    def _apply(self, service: str, what: str, before: dict, after: dict,
               leases: dict[str, int] | None = None) -> None:
        self.readback.apply(
            before, after, what=f"{what} for {service}",
            served=lambda state: self.served.difference(service, state),
            errors=lambda: self.served.errors(service),
            restored="the previous policies were restored", leases=leases,
        )  # fmt: skip
