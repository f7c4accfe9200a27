"""Resilience policies at the gateway: Traefik middlewares and load-balancer settings, set live.

Every change is validated before anything is written (one malformed key freezes Traefik's
whole etcd provider), written in one etcd transaction (Traefik never sees half a policy),
then read back from Traefik's API. A change Traefik does not take is rolled back, and the
error says why, in Traefik's own words.
"""

from __future__ import annotations

import re
import time

import etcd3gw
import httpx
import pandas as pd

from .errors import LabError
from .gateway import ROOT, api_get
from .kv import etcd_client
from .kv import transact as _transact
from .topology import INFRA
from .topology import service as known_service

# Router order, outermost first: shed load cheaply before holding a slot, fail fast before
# retrying, and retry innermost so each attempt goes to the service itself.
MIDDLEWARES = {
    "rate-limit": "rateLimit",
    "in-flight": "inFlightReq",
    "circuit-breaker": "circuitBreaker",
    "retry": "retry",
}
LOAD_BALANCER_POLICIES = ("timeout", "strategy", "sticky")
POLICY_NAMES = (*MIDDLEWARES, *LOAD_BALANCER_POLICIES)
STRATEGIES = ("wrr", "p2c")
READBACK_SECONDS = 3.0

_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: header and cookie names
_MAX_INT = 2**31 - 1


# --- validation: everything is checked before a single key is written -----------------------


def _seconds(text: str) -> float:
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))


def _duration(what: str, value: object) -> str:
    if not (isinstance(value, str) and _DURATION.fullmatch(value) and _seconds(value) > 0):
        raise LabError(
            f"{what} must be a positive duration such as '100ms', '2s' or '1m', got {value!r}"
        )
    return value


def _positive_int(what: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_INT:
        raise LabError(f"{what} must be a whole number from 1 to {_MAX_INT}, got {value!r}")
    return str(value)


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


# Traefik's circuit-breaker grammar. Its type checks are strict (measured on 3.7): ratios
# compare with a decimal (0.5, not 1), latency with whole milliseconds, the quantile is a
# decimal and the status codes are whole numbers.
_EXPRESSION_HELP = (
    "valid: NetworkErrorRatio(), ResponseCodeRatio(from, to, dividedByFrom, dividedByTo) "
    "(whole status codes) or LatencyAtQuantileMS(quantile) (a decimal such as 50.0), "
    "compared with > < >= <= == != to a number (ratios: a decimal such as 0.5; latency: "
    "whole milliseconds), combined with && and || and parentheses; "
    "e.g. 'ResponseCodeRatio(500, 600, 0, 600) > 0.5 || LatencyAtQuantileMS(50.0) > 100'"
)
_LEX = re.compile(r"\s*(?:(\d+\.\d+|\d+)|([A-Za-z_]\w*)|(&&|\|\||>=|<=|==|!=|>|<)|([(),]))")


class _ExpressionParser:
    def __init__(self, text: str):
        self.tokens: list[str] = []
        position = 0
        text = text.rstrip()
        while position < len(text):
            match = _LEX.match(text, position)
            if not match:
                self.fail(f"unexpected character {text[position:].lstrip()[:1]!r}")
            self.tokens.append(match.group(match.lastindex or 0))
            position = match.end()
        self.index = 0

    def fail(self, reason: str) -> None:
        raise LabError(f"invalid circuit-breaker expression: {reason}; {_EXPRESSION_HELP}")

    def peek(self) -> str | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            self.fail(f"expected {expected or 'more'}, got {token or 'the end'}")
        self.index += 1
        return token  # type: ignore[return-value]  # fail() never returns

    def number(self, decimal: bool) -> None:
        token = self.take()
        if not re.fullmatch(r"\d+\.\d+" if decimal else r"\d+", token):
            self.fail(f"expected a {'decimal' if decimal else 'whole'} number, got {token}")

    def parse(self) -> None:
        self.disjunction()
        if self.peek() is not None:
            self.fail(f"unexpected {self.peek()}")

    def disjunction(self) -> None:
        self.conjunction()
        while self.peek() == "||":
            self.take()
            self.conjunction()

    def conjunction(self) -> None:
        self.comparison()
        while self.peek() == "&&":
            self.take()
            self.comparison()

    def comparison(self) -> None:
        if self.peek() == "(":
            self.take()
            self.disjunction()
            self.take(")")
            return
        is_ratio = self.metric()
        if self.take() not in (">", "<", ">=", "<=", "==", "!="):
            self.fail(f"expected a comparison after the metric, got {self.tokens[self.index - 1]}")
        self.number(decimal=is_ratio)

    def metric(self) -> bool:
        """Parse one metric call; True when it is a ratio (compared with a decimal)."""
        name = self.take()
        self.take("(")
        if name == "NetworkErrorRatio":
            pass
        elif name == "LatencyAtQuantileMS":
            self.number(decimal=True)
            if not 0 < float(self.tokens[self.index - 1]) <= 100:
                self.fail("the quantile must be above 0 and at most 100")
        elif name == "ResponseCodeRatio":
            codes = []
            for i in range(4):
                if i:
                    self.take(",")
                self.number(decimal=False)
                codes.append(int(self.tokens[self.index - 1]))
            if not (codes[0] < codes[1] and codes[2] < codes[3]):
                self.fail("each status-code range must run from low to high")
        else:
            self.fail(f"unknown metric {name!r}")
        self.take(")")
        return name != "LatencyAtQuantileMS"


def check_expression(expression: object) -> str:
    """The expression if Traefik's circuit breaker will accept it, else a LabError saying why."""
    if not isinstance(expression, str) or not expression.strip():
        raise LabError(f"the circuit-breaker expression must be a string; {_EXPRESSION_HELP}")
    _ExpressionParser(expression).parse()
    return expression.strip()


# --- reading Traefik's view back -------------------------------------------------------------


def _flatten(value: object, prefix: str = "") -> dict[str, str]:
    """Traefik's JSON as lower-case key paths (KV keys are case-insensitive)."""
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
    if _DURATION.fullmatch(expected) and _DURATION.fullmatch(actual):
        return abs(_seconds(expected) - _seconds(actual)) < 1e-9  # "1m" reads back as "1m0s"
    return expected.lower() == actual.lower()


class Policies:
    """Set, inspect and remove a service's resilience policies at the gateway."""

    def __init__(
        self, etcd: etcd3gw.Etcd3Client | None = None, traefik_api_url: str = INFRA.traefik_api.url
    ):
        self.etcd = etcd if etcd is not None else etcd_client()
        self.api = httpx.Client(base_url=traefik_api_url, timeout=2.0)

    # --- the policies ---

    def timeout(
        self, service: str, response_header: str = "2s", dial: str | None = None,
        idle: str | None = None,
    ) -> None:  # fmt: skip
        """How long the gateway waits for a server (a serversTransport named after the service)."""
        name = self._service(service)
        settings = {"responseHeaderTimeout": _duration("response_header", response_header)}
        if dial is not None:
            settings["dialTimeout"] = _duration("dial", dial)
        if idle is not None:
            settings["idleConnTimeout"] = _duration("idle", idle)
        keys = {f"{self._transport(name)}/forwardingTimeouts/{k}": v for k, v in settings.items()}
        keys[f"{self._balancer(name)}/serversTransport"] = name
        self._change(name, "timeout", keys)

    def retry(self, service: str, attempts: int = 3, initial_interval: str = "100ms") -> None:
        self._middleware(service, "retry", {
            "attempts": _positive_int("attempts", attempts),
            "initialInterval": _duration("initial_interval", initial_interval),
        })  # fmt: skip

    def circuit_breaker(
        self, service: str, expression: str, check_period: str = "1s",
        fallback_duration: str = "5s", recovery_duration: str = "5s",
    ) -> None:  # fmt: skip
        self._middleware(service, "circuit-breaker", {
            "expression": check_expression(expression),
            "checkPeriod": _duration("check_period", check_period),
            "fallbackDuration": _duration("fallback_duration", fallback_duration),
            "recoveryDuration": _duration("recovery_duration", recovery_duration),
        })  # fmt: skip

    def rate_limit(
        self, service: str, average: int, burst: int = 1, period: str = "1s", per: str = "ip"
    ) -> None:
        self._middleware(service, "rate-limit", {
            "average": _positive_int("average", average),
            "burst": _positive_int("burst", burst),
            "period": _duration("period", period),
            **_source_criterion(per, allow_host=False),
        })  # fmt: skip

    def in_flight(self, service: str, amount: int, per: str | None = "ip") -> None:
        """A bulkhead: at most `amount` requests in progress per client (or in all, per=None)."""
        self._middleware(service, "in-flight", {
            "amount": _positive_int("amount", amount),
            **_source_criterion(per, allow_host=True),
        })  # fmt: skip

    def strategy(self, service: str, strategy: str) -> None:
        if strategy not in STRATEGIES:
            raise LabError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        name = self._service(service)
        self._change(name, "strategy", {f"{self._balancer(name)}/strategy": strategy})

    def sticky(self, service: str, cookie: str = "lab_sticky") -> None:
        name = self._service(service)
        keys = {f"{self._balancer(name)}/sticky/cookie/name": _token("cookie", cookie)}
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
        self._apply(name, "all policies", self._read(name), {})

    def policies(self, service: str) -> pd.DataFrame:
        """What is in force: each policy's settings (from etcd) and status (from Traefik)."""
        name = self._service(service)
        state = self._read(name)
        rows = []
        for policy in POLICY_NAMES:
            keys = {k: v for k, v in state.items() if self._owner(name, k) == policy}
            if keys:
                settings = ", ".join(f"{k.rsplit('/', 1)[-1]}={v}" for k, v in sorted(keys.items()))
                rows.append({"policy": policy, "settings": settings,
                             "status": self._status(name, policy)})  # fmt: skip
        return pd.DataFrame(rows, columns=["policy", "settings", "status"])

    # --- keys ---

    @staticmethod
    def _service(name: str) -> str:
        return known_service(name).name

    @staticmethod
    def _balancer(service: str) -> str:
        return f"{ROOT}/http/services/{service}/loadBalancer"

    @staticmethod
    def _transport(service: str) -> str:
        return f"{ROOT}/http/serversTransports/{service}"

    @staticmethod
    def _router_list(service: str) -> str:
        return f"{ROOT}/http/routers/{service}/middlewares/"

    def _prefixes(self, service: str) -> dict[str, str]:
        """Key prefix -> the policy that owns the keys under it."""
        balancer = self._balancer(service)
        prefixes = {f"{ROOT}/http/middlewares/{service}-{p}/": p for p in MIDDLEWARES}
        prefixes.update({
            f"{self._transport(service)}/": "timeout",
            f"{balancer}/serversTransport": "timeout",
            f"{balancer}/strategy": "strategy",
            f"{balancer}/sticky/": "sticky",
            self._router_list(service): "router",
        })  # fmt: skip
        return prefixes

    def _owner(self, service: str, key: str) -> str | None:
        return next((p for pre, p in self._prefixes(service).items() if key.startswith(pre)), None)

    def _read(self, service: str) -> dict[str, str]:
        """Every key the policies own for this service, including the router's middleware list."""
        state: dict[str, str] = {}
        for prefix in self._prefixes(service):
            for value, meta in self.etcd.get_prefix(prefix):
                state[meta["key"].decode()] = value.decode()
        return state

    def _middleware(self, service: str, policy: str, settings: dict[str, str]) -> None:
        name = self._service(service)
        prefix = f"{ROOT}/http/middlewares/{name}-{policy}/{MIDDLEWARES[policy]}"
        self._change(name, policy, {f"{prefix}/{k}": v for k, v in settings.items()})

    def _change(self, service: str, policy: str, keys: dict[str, str]) -> None:
        """Replace one policy's keys (none = remove it) and re-number the router's list."""
        before = self._read(service)
        replaced = {policy, "router"}
        kept = {k: v for k, v in before.items() if self._owner(service, k) not in replaced}
        after = {**kept, **keys}
        present = {self._owner(service, k) for k in after}
        chain = [p for p in MIDDLEWARES if p in present]
        after.update({f"{self._router_list(service)}{i}": f"{service}-{p}"
                      for i, p in enumerate(chain)})  # fmt: skip
        self._apply(service, policy, before, after)

    # --- apply, confirm, roll back ---

    def _apply(self, service: str, what: str, before: dict, after: dict) -> None:
        if before == after:
            return
        _transact(self.etcd, before, after)
        problem = self._wait_for(service, after, stop_on_error=True)
        if problem is None:
            return
        _transact(self.etcd, after, before)
        restored = self._wait_for(service, before, stop_on_error=False)
        note = "" if restored is None else f" (the previous state is not back yet: {restored})"
        raise LabError(f"Traefik did not apply {what} for {service}: {problem}; "
                       f"the previous policies were restored{note}")  # fmt: skip

    def _wait_for(self, service: str, state: dict[str, str], stop_on_error: bool) -> str | None:
        """None once Traefik serves `state`; else, after a bounded wait, what differs.

        A change stops at Traefik's first error; a rollback waits out the errors it clears.
        """
        deadline = time.monotonic() + READBACK_SECONDS
        while True:
            try:
                problem = self._difference(service, state)
            except httpx.HTTPError as exc:
                problem = f"Traefik's API did not answer ({exc})"
            if problem is None:
                return None
            rejected = stop_on_error and problem.startswith("Traefik reports")
            if rejected or time.monotonic() >= deadline:
                return problem
            time.sleep(0.05)

    def _get(self, path: str) -> dict | None:
        return api_get(self.api, path)

    def _difference(self, service: str, state: dict[str, str]) -> str | None:
        """What Traefik shows that differs from `state` (None when it matches)."""
        router = self._get(f"/api/http/routers/{service}@etcd") or {}
        balancer = self._get(f"/api/http/services/{service}@etcd") or {}
        middlewares = {p: self._get(f"/api/http/middlewares/{service}-{p}@etcd")
                       for p in MIDDLEWARES}  # fmt: skip
        errors = [*router.get("error", []), *balancer.get("error", [])]
        for body in middlewares.values():
            errors += (body or {}).get("error", [])
        if errors:
            return "Traefik reports: " + "; ".join(dict.fromkeys(errors))

        listed = {int(k.rsplit("/", 1)[1]): v for k, v in state.items()
                  if k.startswith(self._router_list(service))}  # fmt: skip
        chain = [listed[i] + "@etcd" for i in sorted(listed)]
        if router.get("status") != "enabled" or router.get("middlewares", []) != chain:
            return (f"router {service} has middlewares {router.get('middlewares', [])}, "
                    f"expected {chain} (is the etcd provider frozen by a bad key?)")  # fmt: skip
        for policy, body in middlewares.items():
            prefix = f"{ROOT}/http/middlewares/{service}-{policy}/"
            wanted = {k[len(prefix):].lower(): v for k, v in state.items() if k.startswith(prefix)}
            if not wanted:
                if body is not None:
                    return f"middleware {service}-{policy} is still in force"
                continue
            kind = MIDDLEWARES[policy]
            shown = _flatten({kind: body.get(kind)}) if body else {}
            if not body or body.get("status") != "enabled" or not all(
                _same(v, shown.get(k)) for k, v in wanted.items()
            ):
                return f"middleware {service}-{policy} shows {shown or 'nothing'}"
        return self._balancer_difference(service, state, balancer.get("loadBalancer", {}))

    def _balancer_difference(self, service: str, state: dict[str, str], shown: dict) -> str | None:
        # the serversTransport itself is not in Traefik's API: only the service's reference is
        balancer = self._balancer(service)
        wanted = {
            "strategy": state.get(f"{balancer}/strategy", "wrr"),  # Traefik's default
            "serversTransport": f"{service}@etcd" if f"{balancer}/serversTransport" in state
            else None,
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

    def _status(self, service: str, policy: str) -> str:
        if policy in MIDDLEWARES:
            body = self._get(f"/api/http/middlewares/{service}-{policy}@etcd")
        else:
            body = self._get(f"/api/http/services/{service}@etcd")
        if body is None:
            return "missing"
        errors = body.get("error", [])
        return body.get("status", "unknown") + (f": {'; '.join(errors)}" if errors else "")
