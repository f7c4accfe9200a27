"""Resilience policies at the gateway: Traefik middlewares and load-balancer settings, set live.

Every change is validated before anything is written (one malformed key freezes Traefik's
whole etcd provider), then written and read back through labkit.readback: one etcd
transaction, confirmed from Traefik's API, rolled back with Traefik's own error if it does
not take. Where the keys live is labkit.policy_keys; the circuit-breaker grammar is
labkit.breaker_expression.
"""

from __future__ import annotations

import re

import etcd3gw
import httpx
import pandas as pd

from . import policy_keys
from .breaker_expression import check_expression
from .errors import LabError
from .kv import etcd_client
from .policy_keys import MIDDLEWARES, POLICY_NAMES
from .policy_served import ServedPolicies
from .readback import ReadBack
from .topology import infra
from .topology import service as known_service
from .traefik_limits import count as _count
from .traefik_limits import duration as _duration

STRATEGIES = ("wrr", "p2c")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: header and cookie names

Duration = float | str  # seconds, or a Go duration string such as "250ms"


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


class Policies:
    """Set, inspect and remove a service's resilience policies at the gateway."""

    def __init__(
        self, etcd: etcd3gw.Etcd3Client | None = None, traefik_api_url: str | None = None
    ):
        self.etcd = etcd if etcd is not None else etcd_client()
        self.api = httpx.Client(base_url=traefik_api_url or infra().traefik_api.url, timeout=2.0)
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
        keys[f"{policy_keys.balancer(name)}/serversTransport"] = name
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
            keys = {k: v for k, v in state.items() if policy_keys.owner(name, k) == policy}
            if keys:
                settings = ", ".join(f"{k.rsplit('/', 1)[-1]}={v}" for k, v in sorted(keys.items()))
                rows.append({"policy": policy, "settings": settings,
                             "status": self.served.status(name, policy)})  # fmt: skip
        return pd.DataFrame(rows, columns=["policy", "settings", "status"])

    # --- writing ---

    @staticmethod
    def _service(name: str) -> str:
        return known_service(name).name

    def _middleware(self, service: str, policy: str, settings: dict[str, str]) -> None:
        name = self._service(service)
        prefix = f"{policy_keys.middleware(name, policy)}{MIDDLEWARES[policy]}"
        self._change(name, policy, {f"{prefix}/{k}": v for k, v in settings.items()})

    def _change(self, service: str, policy: str, keys: dict[str, str]) -> None:
        """Replace one policy's keys (none = remove it) and re-number the router's list."""
        before = policy_keys.read(self.etcd, service)
        self._apply(service, policy, before, policy_keys.replace(service, before, policy, keys))

    def _apply(self, service: str, what: str, before: dict, after: dict) -> None:
        self.readback.apply(
            before, after, what=f"{what} for {service}",
            served=lambda state: self.served.difference(service, state),
            errors=lambda: self.served.errors(service),
            restored="the previous policies were restored",
        )  # fmt: skip
