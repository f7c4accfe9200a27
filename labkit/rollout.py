"""Rolling upgrade: replace a fleet instance by instance, never below its serving capacity.

Each round replaces `batch` old instances. Up to `surge` new ones start first, in free slots:
each must become ready, register and be routed by Traefik before any old one goes. Old
instances are then stopped gracefully: each deregisters first (the gateway drops it within
milliseconds), drains its requests in flight, then exits. With `surge` < `batch`, the
difference is stopped before the new ones start (fewer instances for a moment, no extra).

If new instances are not routed within `ready_timeout`, the round is undone (new instances
stopped, any old one stopped for it started again), then the rounds already done are rolled
back the same way, new instance by new instance, and RolloutAborted carries the report.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pandas as pd

from .backends.base import Backend
from .errors import LabError
from .topology import MAX_REPLICAS, Service
from .versions import ReleaseFiles, free_slots

REPORT_COLUMNS = ["round", "started", "stopped", "ready_s", "drained_s", "fleet"]


class RolloutAborted(LabError):
    """New instances failed readiness: the fleet was rolled back; `.report` says how far."""

    def __init__(self, message: str, report: pd.DataFrame):
        super().__init__(message)
        self.report = report


def check(svc: Service, version: object, batch: object, surge: object, ready_timeout: object,
          fleet: int, old: int) -> None:
    """Refuse a rollout that cannot run, before anything starts."""
    svc.release(version)
    for name, value, low, high in (("batch", batch, 1, max(old, 1)),
                                   ("surge", surge, 0, batch if isinstance(batch, int) else 0)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise LabError(f"{name} must be a whole number from {low} to {high} ({old} of "
                           f"{svc.name}'s {fleet} instances to replace), got {value!r}")
    assert isinstance(surge, int)  # checked just above
    if fleet + surge > MAX_REPLICAS:
        raise LabError(f"{fleet} instances + surge {surge} exceeds the {MAX_REPLICAS} slots of "
                       f"{svc.name}; lower surge to at most {MAX_REPLICAS - fleet}")
    if (isinstance(ready_timeout, bool) or not isinstance(ready_timeout, int | float)
            or not 1 <= ready_timeout <= 120):
        raise LabError(f"ready_timeout must be a number of seconds from 1 to 120, "
                       f"got {ready_timeout!r}")


class Rollout:
    def __init__(self, backend: Backend, releases: ReleaseFiles,
                 progress: Callable[[str], None]):
        self.backend = backend
        self.releases = releases
        self.progress = progress

    def run(self, svc: Service, version: str, batch: int, surge: int,
            ready_timeout: float) -> pd.DataFrame:
        """Replace every instance not running `version`; one row per round."""
        old = [s for s in self.backend.active_slots(svc)
               if self.releases.version(svc, s) != version]
        rows: list[dict] = []
        done: list[tuple[int, str]] = []  # (new slot, version of the instance it replaced)
        for start in range(0, len(old), batch):
            chunk = old[start:start + batch]
            targets = [(slot, version) for slot in chunk]
            try:
                done += self._round(svc, targets, surge, ready_timeout, rows)
            except LabError as failure:
                self._abort(svc, version, failure, done, surge, ready_timeout, rows)
        self.releases.adopt(svc, version, self.backend.active_slots(svc))
        self.progress(f"rollout of {svc.name} to {version} complete: {self._fleet(svc)}")
        return pd.DataFrame(rows, columns=REPORT_COLUMNS)

    def _round(self, svc: Service, targets: list[tuple[int, str]], surge: int,
               ready_timeout: float, rows: list[dict]) -> list[tuple[int, str]]:
        """Replace each (old slot, new version); returns (new slot, version it replaced) pairs.
        Raises (after undoing the round) if the new instances are not routed in time."""
        olds = [slot for slot, _ in targets]
        first, later = olds[:max(len(olds) - surge, 0)], olds[max(len(olds) - surge, 0):]
        old_versions = {slot: self.releases.version(svc, slot) for slot in olds}
        drained = self._drain(svc, first)
        active = self.backend.active_slots(svc)
        new_slots = free_slots(active)[:len(targets)]
        for slot, (_, version) in zip(new_slots, targets, strict=True):
            self.releases.assign(svc, slot, version)
        started = time.monotonic()
        try:
            self.backend.start_instances(svc, new_slots, lambda _msg: None, ready_timeout)
        except LabError:
            self.backend.stop_instances(svc, new_slots, lambda _msg: None)
            for slot in new_slots:
                self.releases.release_slot(svc, slot)
            for slot in first:
                self.releases.assign(svc, slot, old_versions[slot])
            self.backend.start_instances(svc, first, lambda _msg: None)
            rows.append({"round": len(rows) + 1, "started": self._names(svc, new_slots, targets)
                         + " never routed: stopped", "stopped": "",
                         "ready_s": round(time.monotonic() - started, 2), "drained_s": 0.0,
                         "fleet": self._fleet(svc)})
            raise
        ready_s = time.monotonic() - started
        drained += self._drain(svc, later)
        row = {
            "round": len(rows) + 1,
            "started": self._names(svc, new_slots, targets),
            "stopped": ", ".join(f"{svc.name}-{s} ({old_versions[s]})" for s in olds),
            "ready_s": round(ready_s, 2), "drained_s": round(drained, 2),
            "fleet": self._fleet(svc),
        }
        rows.append(row)
        self.progress(f"round {row['round']}: started {row['started']} (routed in "
                      f"{ready_s:.1f} s), drained {row['stopped']} ({drained:.1f} s); "
                      f"fleet: {row['fleet']}")
        return [(new, old_versions[old]) for new, old in zip(new_slots, olds, strict=True)]

    @staticmethod
    def _names(svc: Service, slots: list[int], targets: list[tuple[int, str]]) -> str:
        return ", ".join(f"{svc.name}-{s} ({v})" for s, (_, v) in zip(slots, targets, strict=True))

    def _drain(self, svc: Service, slots: list[int]) -> float:
        """Stop gracefully (deregister, drain, exit); the slots start as the current release
        next time. Returns the seconds it took."""
        started = time.monotonic()
        self.backend.stop_instances(svc, slots, lambda _msg: None)
        for slot in slots:
            self.releases.release_slot(svc, slot)
        return time.monotonic() - started if slots else 0.0

    def _abort(self, svc: Service, version: str, failure: LabError,
               done: list[tuple[int, str]], surge: int, ready_timeout: float,
               rows: list[dict]) -> None:
        first_line = str(failure).splitlines()[0]
        self.progress(f"new {version} instances were not routed in {ready_timeout:g} s: "
                      f"{first_line}; rolling back")
        for new_slot, old_version in reversed(done):
            self._round(svc, [(new_slot, old_version)], min(surge, 1), ready_timeout, rows)
        report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
        raise RolloutAborted(
            f"rollout of {svc.name} to {version} aborted: {first_line}; rolled back, the "
            f"fleet is {self._fleet(svc)}. Hint: see the new instances' logs "
            f"(lab.backend.log_tail('{svc.name}-N')) for why they never became ready",
            report,
        ) from failure

    def _fleet(self, svc: Service) -> str:
        counts = Counter(self.releases.version(svc, s) for s in self.backend.active_slots(svc))
        return ", ".join(f"{v} x{n}" for v, n in sorted(counts.items()))
