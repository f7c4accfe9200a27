"""Horizontal autoscaling: a control loop that reads a service's request rate from Prometheus
and scales it to keep each instance near a target rate, within bounds and the lab's budget.

The decision is Kubernetes' HorizontalPodAutoscaler's: recommended = ceil(rate / target),
clamped to [min, max]. Scaling up follows the recommendation at once; scaling down takes the
highest recommendation of the last `stabilization` seconds, so a dip in the load does not
remove instances that the next second needs again (without a window the loop flaps). The
pure parts (`recommend`, `stabilized`) and the loop (`run`, with its clock, sleep, observe
and scale passed in) are shaped like labkit.canary, so a unit test runs a whole scenario.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pandas as pd

from . import durations
from .control_loop import ControlLoop, Record
from .errors import LabError
from .topology import MAX_REPLICAS, RULES, Service

DECISION_COLUMNS = ["time", "rate_rps", "replicas", "recommended", "stabilized", "action",
                    "reason"]
MIN_INTERVAL_S = RULES.evaluation_s  # Prometheus has no newer rate than its last evaluation


@dataclass(frozen=True)
class Policy:
    min: int
    max: int
    target_rps: float  # per instance
    stabilization_s: float
    interval_s: float


def check_policy(min_replicas: object, max_replicas: object, target_rps: object,
                 stabilization: object, interval: object) -> Policy:
    """Everything checked before the loop starts, each error naming what is valid."""
    for name, value in (("min", min_replicas), ("max", max_replicas)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPLICAS:
            raise LabError(f"{name} must be a whole number from 1 to {MAX_REPLICAS}, "
                           f"got {value!r}")
    assert isinstance(min_replicas, int) and isinstance(max_replicas, int)  # checked above
    if min_replicas > max_replicas:
        raise LabError(f"min ({min_replicas}) must not exceed max ({max_replicas})")
    if (isinstance(target_rps, bool) or not isinstance(target_rps, int | float)
            or not 0 < target_rps <= 10_000):
        raise LabError(f"target_rps_per_instance must be a number above 0 (and at most "
                       f"10000), got {target_rps!r}")
    every = durations.seconds(interval, "interval", maximum=60)
    if every < MIN_INTERVAL_S:
        raise LabError(f"interval must be at least {MIN_INTERVAL_S} s (Prometheus evaluates "
                       f"the rates every {RULES.evaluation_s} s) and at most 60, got {interval!r}")
    return Policy(min_replicas, max_replicas, float(target_rps),
                  durations.seconds(stabilization, "stabilization", maximum=600), every)


def gateway_rate(svc: Service) -> str:
    """PromQL for the rate the gateway sends to `svc`, every version included: Traefik's
    counter per service, which a new instance does not restart (the sum of the instances'
    own rates counts a new instance short for a whole rate window, and with it the total:
    scaling up by one instance at a time, 9 to 21 s to meet a step)."""
    # topology names are [a-z0-9-]: nothing to escape (PromQL strings refuse "\-")
    names = "|".join((svc.name, *(svc.version_service(r.version) for r in svc.releases)))
    return (f'sum(rate(traefik_service_requests_total{{service=~"({names})@etcd"}}'
            f'[{RULES.window_s}s]))')


def recommend(rate_rps: float, policy: Policy) -> int:
    """Instances for `rate_rps` at the target rate each, within [min, max]."""
    wanted = math.ceil(rate_rps / policy.target_rps - 1e-9) if rate_rps > 0 else 0
    return min(max(wanted, policy.min), policy.max)


def stabilized(history: list[tuple[float, int]], now: float, current: int,
               policy: Policy) -> int:
    """Up at once to the newest recommendation; down only to the highest one of the window."""
    newest = history[-1][1]
    if newest >= current:
        return newest
    return max(n for t, n in history if t >= now - policy.stabilization_s)


def run(policy: Policy, observe: Callable[[], float | None], current: Callable[[], int],
        scale: Callable[[int], None], stop: threading.Event, record: Callable[[dict], None],
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep) -> None:
    """Every interval until `stop`: observe the rate, decide, scale if the decision differs;
    `record` gets each decision (a DataFrame row), a refused scale included."""
    # the fleet as found counts as a recommendation (as in Kubernetes): a fresh loop does not
    # scale down before a whole window has shown that fewer instances are enough
    history: list[tuple[float, int]] = [(clock(), current())]
    while not stop.is_set():
        began = clock()
        rate, replicas = observe(), current()
        row = {"time": began, "rate_rps": rate, "replicas": replicas, "recommended": None,
               "stabilized": None, "action": "none", "reason": ""}
        if rate is None:
            row["reason"] = "no rate yet (Prometheus has no sample of the service)"
        else:
            history.append((began, recommend(rate, policy)))
            history = [(t, n) for t, n in history if t >= began - policy.stabilization_s]
            wanted = stabilized(history, began, replicas, policy)
            row.update(recommended=history[-1][1], stabilized=wanted)
            if wanted != replicas:
                try:
                    scale(wanted)
                    # the loop saw nothing while instances started (8-17 s on a busy machine,
                    # longer than a short window): what it scaled to holds from when it is done
                    history.append((clock(), wanted))
                    row.update(action=f"scale {replicas} -> {wanted}",
                               reason=f"{rate:.1f} rps / {policy.target_rps:g} per instance")
                except LabError as refused:  # the budget, or a rollout holding the service
                    row.update(action="refused", reason=str(refused).splitlines()[0])
            elif history[-1][1] < replicas:
                row["reason"] = (f"would go down to {history[-1][1]}, held by the "
                                 f"{policy.stabilization_s:g} s stabilization window")
        record(row)
        sleep(max(0.0, began + policy.interval_s - clock()))


class Autoscaler(ControlLoop):
    """A running control loop for one service (lab.autoscale): .decisions has one row per
    loop (the rate observed, the replicas, the recommendation, what was done and why);
    stop() ends it."""

    def __init__(self, service: str, policy: Policy, observe: Callable[[], float | None],
                 current: Callable[[], int], scale: Callable[[int], None],
                 progress: Callable[[str], None]):
        self.service, self.policy = service, policy

        def body(stop: threading.Event, record: Record) -> None:
            run(policy, observe, current, scale, stop, record, sleep=stop.wait)

        def announce(row: dict) -> str | None:
            if row["action"] == "none":
                return None
            return f"autoscaler {service}: {row['action']} ({row['reason']})"

        super().__init__(f"autoscale-{service}", DECISION_COLUMNS, policy.interval_s, body,
                         announce, progress)

    @property
    def decisions(self) -> pd.DataFrame:
        """One row per decision; .attrs holds the service and the policy it ran under."""
        frame = super().decisions
        frame.attrs.update(service=self.service, **asdict(self.policy))
        return frame
