"""Deployments: versions side by side, traffic shifting, canaries and rolling upgrades.

The pieces live in their own modules (versions: which version a slot runs; shifting: the
weighted split at the gateway; canary: the step-by-step analysis; rollout: the rolling
upgrade; servicelock: one operation at a time per service). This class ties them to the
running stack and is what `Lab` exposes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping

import etcd3gw
import httpx
import pandas as pd

from . import canary as canary_analysis
from .backends.base import Backend
from .budget import Budgets
from .errors import LabError
from .metrics import Prometheus
from .mirroring import Mirrors, check_percent
from .registry import Registry
from .rollout import Rollout, check
from .servicelock import ServiceLock
from .shifting import (
    OFF,
    Splits,
    Weights,
    check_preset,
    check_split,
    check_weights,
    describe,
    preset,
)
from .topology import MAX_REPLICAS, SERVICES, Service, check_replicas, infra, service
from .versions import ReleaseFiles, free_slots

VERSION_COLUMNS = ["version", "running", "registered", "weight_pct", "routed_by",
                   "mirrored_pct", "about"]


class Deployments:
    def __init__(self, backend: Backend, progress: Callable[[str], None],
                 etcd: etcd3gw.Etcd3Client,
                 traefik_api_url: str | None = None,
                 prometheus: Prometheus | None = None):
        self.backend = backend
        self.budgets = Budgets(backend)
        self.progress = progress
        self.etcd = etcd  # the caller's: it closes it
        self.api = httpx.Client(base_url=traefik_api_url or infra().traefik_api.url, timeout=2.0)
        self.splits = Splits(self.etcd, self.api)
        self.mirrors = Mirrors(self.etcd, self.api)
        self.releases = ReleaseFiles(backend)
        self.registry = Registry(self.etcd)
        self.prometheus = prometheus or Prometheus()

    def close(self) -> None:
        self.api.close()

    # ---- seeing ---------------------------------------------------------------

    def versions(self, name: str) -> pd.DataFrame:
        """Per version: instances running and registered, and its share of the traffic (the
        split's weight, or with no split each registered instance's share of the fleet)."""
        svc = service(name)
        running = self._running(svc)
        registered = self._registered(svc)
        split = self.splits.current(svc)
        weights = split if split is not None else registered
        total = sum(weights.values())
        mirror = self.mirrors.current(svc)
        rows = [{
            "version": r.version,
            "running": running.get(r.version, 0),
            "registered": registered.get(r.version, 0),
            "weight_pct": round(100 * weights.get(r.version, 0) / total, 1) if total else 0.0,
            "routed_by": "split" if split is not None else "fleet",
            "mirrored_pct": mirror[1] if mirror and mirror[0] == r.version else 0,
            "about": r.about,
        } for r in svc.releases]
        return pd.DataFrame(rows, columns=VERSION_COLUMNS)

    # ---- instances of a version, side by side -----------------------------------

    def deploy(self, name: str, version: str, replicas: int) -> pd.DataFrame:
        """Run `replicas` instances of `version` beside the others. If no split is in force,
        traffic is first pinned to the version serving now, so new ones get none until
        shifted to."""
        svc = service(name)
        svc.release(version)
        replicas = check_replicas(replicas)
        with self._lock(svc, f"deploy {replicas} x {version}"):
            active = self.backend.active_slots(svc)
            mine = [s for s in active if self.releases.version(svc, s) == version]
            self.budgets.check(svc, len(active) - len(mine) + replicas,
                               f"deploying {replicas} x {svc.name} {version}")
            if replicas > len(mine):
                self._add(svc, version, replicas - len(mine), active)
            elif replicas < len(mine):
                self._remove(svc, version, mine[replicas:], replicas)
        return self.versions(name)

    def _add(self, svc: Service, version: str, count: int, active: list[int]) -> None:
        free = free_slots(active)
        if count > len(free):
            raise LabError(f"{svc.name} has {len(free)} free slots of {MAX_REPLICAS}; cannot "
                           f"start {count} more instances of {version}")
        others = {v for v in self._running(svc) if v != version}
        if others and self.splits.current(svc) is None:
            self._apply(svc, {self._majority(svc, exclude=version): 100})
        slots = free[:count]
        self.backend.ensure_free(svc, slots)
        for slot in slots:
            self.releases.assign(svc, slot, version)
        self.backend.start_instances(svc, slots, self.progress)

    def _remove(self, svc: Service, version: str, slots: list[int], keep: int) -> None:
        split = self.splits.current(svc)
        if keep == 0 and split is not None and split.get(version):
            raise LabError(f"{version} still has weight in {svc.name}'s split "
                           f"({describe(split)}): shift it away before stopping its last "
                           f"instance")
        self.backend.stop_instances(svc, slots, self.progress)
        for slot in slots:
            self.releases.release_slot(svc, slot)

    # ---- traffic shifting --------------------------------------------------------

    def shift(self, name: str, weights: Mapping[str, float] | str,
              to: str | None = None) -> Weights | None:
        """Split traffic between versions by weight, e.g. {"v1": 90, "v2": 10}; or a preset:
        "tenth", "half" or "full" of it to version `to`; or "off" to send to the whole fleet
        again. Written in one etcd transaction and confirmed from Traefik's API."""
        svc = service(name)
        # every argument is checked before the lock is taken: a bad call leaves etcd unchanged
        if isinstance(weights, str):
            if weights != OFF:
                check_preset(svc, weights, to)
        elif to is not None:
            raise LabError("to= goes with a preset ('tenth', 'half', 'full'), "
                           "not with explicit weights")
        else:
            check_split(svc, weights)
        with self._lock(svc, f"shift {weights}"):
            if weights == OFF:
                return self._apply(svc, None)
            if isinstance(weights, str):
                weights = preset(weights, to, self.splits.current(svc), svc,
                                 self._majority(svc, exclude=to))
            return self._apply(svc, weights)

    def rollback(self, name: str) -> Weights | None:
        """Undo the last shift: restore the split before it (each call goes one further back)."""
        svc = service(name)
        with self._lock(svc, "rollback"):
            self._not_mirroring(svc, "roll back")
            history = self.splits.history(svc)
            if not history:
                raise LabError(f"nothing to roll back: no earlier split of {svc.name} is "
                               f"recorded (now: {describe(self.splits.current(svc))})")
            previous = history[-1]
            if previous is not None:
                check_weights(svc, previous, self._registered(svc))
            current = self.splits.current(svc)
            self.splits.apply(svc, previous, history[:-1])
            self.progress(f"{svc.name} rolled back: {describe(current)} -> {describe(previous)}")
            return previous

    def _apply(self, svc: Service, weights: Mapping[str, float] | None) -> Weights | None:
        self._not_mirroring(svc, "shift")
        current = self.splits.current(svc)
        split = None if weights is None else check_weights(svc, weights, self._registered(svc))
        if split == current:
            return split
        self.splits.apply(svc, split, [*self.splits.history(svc), current])
        self.progress(f"{svc.name}: {describe(current)} -> {describe(split)}, live at the gateway")
        return split

    # ---- mirroring -----------------------------------------------------------------

    def mirror(self, name: str, to: str | None, percent: int) -> tuple[str, int] | None:
        """Copy `percent`% of the requests to version `to` (its answers are dropped), or stop
        mirroring with to=None. Returns (version, percent) now mirrored to, or None."""
        svc = service(name)
        if to is not None:  # checked before the lock: a bad call leaves etcd unchanged
            svc.release(to)
            percent = check_percent(percent)
        with self._lock(svc, f"mirror to {to}"):
            current = self.mirrors.current(svc)
            if to is None:
                if current is not None:
                    self.mirrors.stop(svc)
                    self.progress(f"{svc.name}: mirroring to {current[0]} stopped")
                return None
            if current is not None:
                raise LabError(f"{svc.name} already mirrors {current[1]}% of its traffic to "
                               f"{current[0]}; stop it first with "
                               f"lab.mirror({svc.name!r}, None)")
            check_weights(svc, {to: 1}, self._registered(svc))  # someone to receive copies
            self.mirrors.start(svc, to, percent)
            self.progress(f"{svc.name}: {percent}% of requests copied to {to}, answers still "
                          f"from {describe(self.splits.current(svc))}")
            return to, percent

    def _not_mirroring(self, svc: Service, action: str) -> None:
        """Shifts and rollouts rewrite the router, which mirroring has wrapped: refuse them."""
        current = self.mirrors.current(svc)
        if current is not None:
            raise LabError(f"cannot {action} {svc.name} while it mirrors {current[1]}% of its "
                           f"traffic to {current[0]}; stop with lab.mirror({svc.name!r}, None)")

    # ---- canary ------------------------------------------------------------------

    def canary(self, name: str, to: str, steps: list[int], interval: float,
               slo: dict[str, float] | None, min_requests: int) -> pd.DataFrame:
        svc = service(name)
        svc.release(to)
        plan = canary_analysis.check_plan(steps, interval, slo, min_requests)
        with self._lock(svc, f"canary of {to}"):
            baseline = self._majority(svc, exclude=to)
            check_weights(svc, {baseline: 1, to: 1}, self._registered(svc))
            return canary_analysis.run(
                plan, baseline, to,
                shift=lambda weights: self._apply(svc, weights),
                observe=lambda start, end: canary_analysis.measure(
                    self.prometheus, svc.name, start, end),
                progress=self.progress,
            )

    # ---- rolling upgrade -----------------------------------------------------------

    def rollout(self, name: str, version: str, batch: int, surge: int,
                ready_timeout: float) -> pd.DataFrame:
        svc = service(name)
        svc.release(version)
        with self._lock(svc, f"rollout to {version}"):
            self._not_mirroring(svc, "roll out")
            split = self.splits.current(svc)
            if split is not None:
                raise LabError(f"a traffic split is in force on {svc.name} ({describe(split)}): "
                               f"a rolling upgrade replaces instances behind the whole fleet; "
                               f"end the split first with lab.shift({svc.name!r}, {OFF!r})")
            active = self.backend.active_slots(svc)
            old = [s for s in active if self.releases.version(svc, s) != version]
            check(svc, version, batch, surge, ready_timeout, len(active), len(old))
            self.budgets.check(svc, len(active) + surge,
                               f"a rollout of {svc.name} with surge {surge}")
            self.progress(f"rolling {len(old)} of {svc.name}'s {len(active)} instances to "
                          f"{version}, {batch} at a time, surge {surge}")
            return Rollout(self.backend, self.releases, self.progress).run(
                svc, version, batch, surge, ready_timeout)

    # ---- back to the declared stack ------------------------------------------------

    def reset(self) -> None:
        """Every service back to its declared version, routed to the whole fleet, no history:
        instances of other versions are stopped (the caller restores replica counts).
        The caller holds every service's lock (see Lab.heal)."""
        for svc in SERVICES.values():
            if self.mirrors.current(svc) is not None:
                self.mirrors.stop(svc)
            if self.splits.current(svc) is not None or self.splits.history(svc):
                self.splits.apply(svc, None, [])
            others = [s for s in self.backend.active_slots(svc)
                      if self.releases.version(svc, s) != svc.version]
            self.releases.reset(svc)
            self.backend.stop_instances(svc, others, self.progress)

    # ---- helpers -------------------------------------------------------------------

    def _lock(self, svc: Service, what: str) -> ServiceLock:
        return ServiceLock(self.backend.state, svc.name, what)

    def _running(self, svc: Service) -> Counter:
        return Counter(self.releases.version(svc, s) for s in self.backend.active_slots(svc))

    def _registered(self, svc: Service) -> Counter:
        return Counter(r["version"] for r in self.registry.records(svc.name))

    def _majority(self, svc: Service, exclude: str | None) -> str:
        """The version carrying most traffic now, other than `exclude`: by weight in the split,
        else by registered instances; the declared version when there is none."""
        weights = self.splits.current(svc) or self._registered(svc)
        others = {v: w for v, w in weights.items() if v != exclude and w}
        return max(others, key=others.__getitem__) if others else svc.version
