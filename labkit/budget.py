"""The lab's capacity budget, like a Kubernetes ResourceQuota with a LimitRange's maximum: the
total of the instances' memory and CPU limits, and the replicas of any one service.

Every change that adds instances or raises limits (scale, deploy, a rollout's surge, limits)
asks `Budgets.check` first, under the service's lock, and is refused with what the budget
allows and what is in use. A memory (or CPU) budget counts limits: while it is set, a service
without a memory (CPU) limit cannot grow, and counts 0 until it has one. The topology
declares no budget: heal() removes it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from . import limits, servicelock
from .backends.base import Backend
from .errors import LabError
from .limits import Limits
from .topology import MAX_REPLICAS, SERVICES, Service

BUDGET_FILE = "budget.json"


@dataclass(frozen=True)
class Budget:
    memory_mb: float | None = None  # the sum of every instance's memory limit
    cpu: float | None = None  # the sum of every instance's CPU limit, in cores
    max_replicas: int | None = None  # instances of any one service, surge included

    def __bool__(self) -> bool:
        return self != Budget()


def parse(memory: object, cpu: object, max_replicas: object) -> Budget:
    if max_replicas is not None and (isinstance(max_replicas, bool) or not isinstance(
            max_replicas, int) or not 1 <= max_replicas <= MAX_REPLICAS):
        raise LabError(f"max_replicas must be a whole number from 1 to {MAX_REPLICAS}, or None "
                       f"for no cap; got {max_replicas!r}")
    return Budget(limits.memory_mb(memory, "the memory budget"),
                  limits.cores(cpu, "the CPU budget", maximum=limits.MAX_CPU_BUDGET),
                  max_replicas)


class Budgets:
    def __init__(self, backend: Backend):
        self.backend = backend

    @property
    def _path(self) -> Path:
        return self.backend.state / BUDGET_FILE

    def get(self) -> Budget:
        return Budget(**json.loads(self._path.read_text())) if self._path.exists() else Budget()

    def set(self, budget: Budget) -> None:
        if budget:
            servicelock.write_atomically(self._path, json.dumps(asdict(budget), indent=2))
        else:
            self._path.unlink(missing_ok=True)

    def check(self, svc: Service, instances: int, what: str,
              new_limits: Limits | None = None) -> None:
        """Refuse (LabError) `what` if `svc` running `instances` instances (with `new_limits`,
        if they change) would not fit the budget."""
        budget = self.get()
        if not budget:
            return
        if budget.max_replicas is not None and instances > budget.max_replicas:
            raise LabError(f"{what} would run {instances} instances of {svc.name}; the lab's "
                           f"budget allows {budget.max_replicas} per service (lab.budget())")
        counts, set_limits = self._in_use()
        asked_counts = {**counts, svc.name: instances}
        asked_limits = {**set_limits, svc.name: new_limits or set_limits[svc.name]}
        for resource, cap, unit in (("memory", budget.memory_mb, "MiB"),
                                    ("cpu", budget.cpu, "cores")):
            if cap is None:
                continue
            if instances and _limit(asked_limits[svc.name], resource) is None:
                raise LabError(f"{what}: the lab's {resource} budget counts limits, and "
                               f"{svc.name} has none: set one first, e.g. "
                               f"lab.limits({svc.name!r}, {resource}=...)")
            used = _total(counts, set_limits, resource)
            asked = _total(asked_counts, asked_limits, resource)
            if asked > cap + 1e-9:
                raise LabError(f"{what} needs {asked:g} {unit} of {resource} limits in all; "
                               f"the lab's budget allows {cap:g} ({used:g} in use now)")

    def table(self) -> pd.DataFrame:
        """Per resource: what the budget allows and what the running instances use of it."""
        budget = self.get()
        counts, set_limits = self._in_use()
        rows = [{"resource": "memory (MiB)", "allowed": budget.memory_mb,
                 "in_use": _total(counts, set_limits, "memory")},
                {"resource": "cpu (cores)", "allowed": budget.cpu,
                 "in_use": _total(counts, set_limits, "cpu")},
                {"resource": "replicas per service", "allowed": budget.max_replicas,
                 "in_use": max(counts.values(), default=0)}]
        return pd.DataFrame(rows, columns=["resource", "allowed", "in_use"])

    def _in_use(self) -> tuple[dict[str, int], dict[str, Limits]]:
        services = SERVICES.values()
        return ({s.name: len(self.backend.active_slots(s)) for s in services},
                {s.name: self.backend.limits(s) for s in services})


def _limit(set_limits: Limits, resource: str) -> float | None:
    return set_limits.memory_mb if resource == "memory" else set_limits.cpu


def _total(counts: dict[str, int], set_limits: dict[str, Limits], resource: str) -> float:
    """The sum of the limits of `resource` over the instances (unlimited ones count 0)."""
    return sum(count * (_limit(set_limits[name], resource) or 0)
               for name, count in counts.items())
