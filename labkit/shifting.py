"""Traffic shifting between versions: a Traefik weighted service, written atomically.

Every instance sits behind two load balancers (see stack/labstack/registration.py): the whole
fleet's, `<service>`, and its version's, `<service>-<version>`. With no split in force the
router `<service>` sends traffic to the fleet (each instance its share, whatever its version).
A split is a weighted service over the version load balancers,

    traefik/http/services/echo-split/weighted/services/0/name   = echo-v1
    traefik/http/services/echo-split/weighted/services/0/weight = 90
    traefik/http/services/echo-split/weighted/services/1/name   = echo-v2
    traefik/http/services/echo-split/weighted/services/1/weight = 10
    traefik/http/routers/echo/service                           = echo-split

written in ONE etcd transaction with the split it replaces (so that `rollback` can restore
it), then read back from Traefik's API until it serves exactly that; if Traefik reports an
error the previous keys are restored. Versions with weight 0 are left out of the weighted
service. Middlewares on the router (retries, breakers, limits) apply to split traffic too;
load-balancer policies (strategy, sticky, timeout) belong to the fleet's load balancer, so
they apply only while no split is in force.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import etcd3gw
import httpx

from . import keyspace
from .errors import LabError
from .gateway import api_get
from .mirroring import main_key, mirror_service
from .readback import ReadBack
from .topology import Service
from .traefik_limits import MAX_INT

Weights = dict[str, int]
PRESETS = {"tenth": 10, "half": 50, "full": 100}  # the original's namerd dtabs
OFF = "off"  # shift(service, "off"): no split, the router sends to the whole fleet again
HISTORY_LIMIT = 20


def split_service(svc: Service) -> str:
    return f"{svc.name}-split"


def history_key(svc: Service) -> str:
    return f"labkit/deployments/{svc.name}/history"


EXAMPLE = "e.g. {'v1': 90, 'v2': 10}"


def check_split(svc: Service, weights: object) -> Weights:
    """Whole-number weights >= 0 per known version, summing to more than 0 (checked without
    the stack). Returned without the zero weights."""
    if not isinstance(weights, dict) or not weights:
        raise LabError(f"weights must be a dict of version to weight ({EXAMPLE}) or one of the "
                       f"presets {', '.join(PRESETS)} with to=<version>; got {weights!r}")
    for version, weight in weights.items():
        svc.release(version)  # names the service's versions if unknown
        if (isinstance(weight, bool) or not isinstance(weight, int | float)
                or not 0 <= weight <= MAX_INT or weight != int(weight)):
            raise LabError(f"the weight of {version} must be a whole number from 0 to "
                           f"{MAX_INT} ({EXAMPLE}), got {weight!r}")
    split = {v: int(w) for v, w in weights.items() if w > 0}
    if not split:
        raise LabError(f"the weights sum to zero: at least one version needs a weight above 0 "
                       f"({EXAMPLE})")
    return split


def check_weights(svc: Service, weights: object, running: dict[str, int]) -> Weights:
    """`check_split`, and each version with a weight above 0 has an instance to send it to."""
    split = check_split(svc, weights)
    idle = [v for v in split if not running.get(v)]
    if idle:
        counts = ", ".join(f"{v}: {n}" for v, n in running.items() if n) or "none"
        raise LabError(f"no instance of {', '.join(idle)} is registered to take its weight "
                       f"(registered instances per version: {counts}); start some first, "
                       f"e.g. lab.deploy({svc.name!r}, {idle[0]!r}, replicas=2)")
    return split


def check_preset(svc: Service, name: str, to: object) -> str:
    """A known preset with a known version `to`; returns that version."""
    if name not in PRESETS:
        raise LabError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}, {OFF!r}, "
                       f"or a dict of weights")
    if to is None:
        raise LabError(f"preset {name!r} needs to=<version>, e.g. "
                       f"lab.shift({svc.name!r}, {name!r}, to='v2')")
    return svc.release(to).version


def preset(name: str, to: object, current: Weights | None, svc: Service,
           majority: str) -> Weights:
    """'tenth', 'half' or 'full' of the traffic to version `to`, the rest to the version
    carrying most of it now (`majority` when no split is in force)."""
    to = check_preset(svc, name, to)
    share = PRESETS[name]
    if share == 100:
        return {to: 100}
    others = {v: w for v, w in (current or {majority: 100}).items() if v != to}
    source = max(others, key=others.__getitem__) if others else None
    if source is None:
        raise LabError(f"{svc.name} sends all its traffic to {to} already: nothing to shift "
                       f"from; name both versions, e.g. {{'v1': 90, {to!r}: 10}}")
    return {source: 100 - share, to: share}


class Splits:
    """Read, write and confirm the traffic split of each service."""

    def __init__(self, etcd: etcd3gw.Etcd3Client, api: httpx.Client):
        self.etcd = etcd
        self.api = api
        self.readback = ReadBack(etcd)

    def current(self, svc: Service) -> Weights | None:
        """version -> weight of the split in force; None when the router sends to the fleet."""
        state = self._read(svc)
        routed = state.get(self._router_key(svc))
        if routed == mirror_service(svc):  # mirroring wraps what the router sent to before
            main = self.etcd.get(main_key(svc))
            routed = main[0].decode() if main else None
        if routed != split_service(svc):
            return None
        return _weights_from_keys(svc, state)

    def history(self, svc: Service) -> list[Weights | None]:
        values = self.etcd.get(history_key(svc))
        return json.loads(values[0]) if values else []

    def apply(self, svc: Service, weights: Weights | None, history: list[Weights | None]) -> None:
        """Route `svc` by `weights` (None: to the whole fleet) and store `history`, in one
        transaction; return once Traefik serves it. Restores the previous keys and raises
        if Traefik reports an error or does not follow within its read-back timeout."""
        before = self._read(svc)
        after = self._keys(svc, weights)
        after[history_key(svc)] = json.dumps(history[-HISTORY_LIMIT:])
        self.readback.apply(
            before, after, served=lambda state: self._difference(svc, state),
            errors=lambda: self.served(svc)[1], what=f"the split {weights} for {svc.name}",
            restored="the previous routing was restored",
        )  # fmt: skip

    def _router_key(self, svc: Service) -> str:
        return f"{keyspace.router(svc.name)}/service"

    def _split_prefix(self, svc: Service) -> str:
        return f"{keyspace.balancer(split_service(svc))}/weighted/"

    def _read(self, svc: Service) -> dict[str, str]:
        """Every key a split owns: the router's service, the weighted service, the history."""
        state = {}
        for prefix in (self._split_prefix(svc), self._router_key(svc), history_key(svc)):
            for value, meta in self.etcd.get_prefix(prefix):
                state[meta["key"].decode()] = value.decode()
        return state

    def _keys(self, svc: Service, weights: Weights | None) -> dict[str, str]:
        if weights is None:
            return {self._router_key(svc): svc.name}
        prefix = self._split_prefix(svc)
        keys = {}
        for index, (version, weight) in enumerate(sorted(weights.items())):
            keys[f"{prefix}services/{index}/name"] = svc.version_service(version)
            keys[f"{prefix}services/{index}/weight"] = str(weight)
        keys[self._router_key(svc)] = split_service(svc)  # after the service it names
        return keys

    def served(self, svc: Service) -> tuple[Weights | None, list[str]]:
        """What Traefik's API shows: (the split the router uses, or None; errors reported)."""
        router = self._get(f"/api/http/routers/{svc.name}@etcd") or {}
        errors = list(router.get("error", []))
        if router.get("service", "").split("@")[0] != split_service(svc):
            return None, errors
        body = self._get(f"/api/http/services/{split_service(svc)}@etcd") or {}
        errors += body.get("error", [])
        shown = body.get("weighted", {}).get("services", [])
        versions = {svc.version_service(v): v for v in svc.versions}
        weights = {versions.get(s["name"].split("@")[0], s["name"]): int(s.get("weight", 1))
                   for s in shown}
        return weights, errors

    def _difference(self, svc: Service, state: Mapping[str, str]) -> str | None:
        """None when Traefik routes as the keys `state` say, else what it shows instead."""
        split = state.get(self._router_key(svc)) == split_service(svc)
        wanted = _weights_from_keys(svc, state) if split else None
        shown, _ = self.served(svc)
        if shown == wanted:
            return None
        return f"Traefik's API shows {shown or 'the whole fleet'} (is the etcd provider frozen?)"

    def _get(self, path: str) -> dict | None:
        return api_get(self.api, path)


def _weights_from_keys(svc: Service, state: Mapping[str, str]) -> Weights:
    prefix = f"{keyspace.balancer(split_service(svc))}/weighted/services/"
    entries: dict[str, dict[str, str]] = {}
    for key, value in state.items():
        if key.startswith(prefix):
            index, field = key[len(prefix):].split("/", 1)
            entries.setdefault(index, {})[field] = value
    versions = {svc.version_service(v): v for v in svc.versions}
    return {versions[e["name"]]: int(e["weight"]) for e in entries.values()}


def describe(weights: Weights | None) -> str:
    """'v1 90% / v2 10%', or 'the whole fleet' when no split is in force."""
    if weights is None:
        return "the whole fleet (no split)"
    total = sum(weights.values())
    return " / ".join(f"{v} {100 * w / total:.0f}%" for v, w in sorted(weights.items()))
