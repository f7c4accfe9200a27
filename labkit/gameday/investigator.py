"""A scripted investigator: finds the game day's incident from telemetry alone.

It reads only what a learner can: Prometheus (lab.metrics), the gateway's access log
(lab.logs), the supervisor's view (lab.status) and the registry's (lab.instances); never the
incident or the fault admin API. `gather` collects the evidence (I/O), `diagnose` decides
(pure: a unit test runs it on made-up evidence), `investigate` waits, bounded, until the
evidence points at one answer.

Only telemetry from after the incident began counts (`since`): the recorded rates cover the
10 s before each sample, so samples stamped less than canary.SETTLE_SECONDS after `since`
still describe the lab before it, and are skipped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import pandas as pd

from .. import log_analysis
from ..canary import SETTLE_SECONDS
from ..topology import LEASE_TTL_SECONDS, RULES, service
from ..waits import wait_for
from .incidents import Truth

if TYPE_CHECKING:
    from ..lab import Lab

ERROR_RATIO = 0.05  # an instance or version failing more than this is failing
HEALTHY_RATIO = 0.01  # ... while one below this is healthy
SLOW_P95_S = 0.1  # an instance whose p95 is above this
SLOW_FACTOR = 3.0  # ... and this multiple of its neighbours' median is slow
LEAK_MB = 25.0  # resident memory that grew (or fell back) by this much: a leak
NOISY_FACTOR = 5.0  # a client sending this multiple of the median client's requests
NOISY_MIN_REQUESTS = 50
HUNG_UPTIME_S = 3 * LEASE_TTL_SECONDS  # running this long yet unregistered: not starting up


@dataclass(frozen=True)
class Evidence:
    service: str
    instance_error_ratio: dict[str, float]  # by instance ("echo-2")
    version_error_ratio: dict[str, float]  # by version ("v1")
    instance_p95_s: dict[str, float]
    memory_range_mb: dict[str, float]  # max - min resident memory since the start, by instance
    noisy_clients: list[str]  # client addresses, the loudest first
    unregistered_running: list[str]  # running for a while, yet not in the registry


def diagnose(evidence: Evidence) -> Truth | None:
    """The answer the evidence points to, or None while it points to nothing yet."""
    name = evidence.service
    if evidence.noisy_clients:
        return Truth(name, evidence.noisy_clients[0], "noisy_client")
    leaking = _worst(evidence.memory_range_mb)
    if leaking and evidence.memory_range_mb[leaking] > LEAK_MB:
        return Truth(name, leaking, "memory_leak")
    if evidence.unregistered_running:
        return Truth(name, evidence.unregistered_running[0], "hung_instance")
    versions = evidence.version_error_ratio
    bad_version = _worst(versions)
    if (len(versions) > 1 and bad_version and versions[bad_version] > ERROR_RATIO
            and min(versions.values()) < HEALTHY_RATIO):
        return Truth(name, bad_version, "bad_release")
    failing = _worst(evidence.instance_error_ratio)
    if failing and evidence.instance_error_ratio[failing] > ERROR_RATIO:
        return Truth(name, failing, "failing_instance")
    p95 = evidence.instance_p95_s
    slow = _worst(p95)
    if slow and len(p95) > 1:
        others = pd.Series({k: v for k, v in p95.items() if k != slow}).median()
        if p95[slow] > max(SLOW_P95_S, SLOW_FACTOR * others):
            return Truth(name, slow, "slow_instance")
    return None


def _worst(values: dict[str, float]) -> str | None:
    finite = {k: v for k, v in values.items() if math.isfinite(v)}
    return max(finite, key=finite.__getitem__) if finite else None


def gather(lab: Lab, name: str, since: float) -> Evidence:
    """Everything the investigator looks at, from the telemetry since `since` (unix s)."""
    now = time.time()
    settled = int(now - since - SETTLE_SECONDS)  # seconds of rule samples after the start
    selector = f'{{service="{name}"}}'

    def by(label: str, promql: str) -> dict[str, float]:
        frame = lab.metrics(promql)
        return {str(k): float(v) for k, v in zip(frame.get(label, []), frame.get("value", []),
                                                 strict=True)}

    def recorded(level: str, metric: str, aggregation: str) -> dict[str, float]:
        if settled < RULES.evaluation_s:  # not one sample describes the incident yet
            return {}
        record = RULES.record(level, metric, aggregation)
        label = "lab_instance" if level == "instance" else "version"
        return by(label, f"avg_over_time({record}{selector}[{settled}s])")

    memory = f"process_resident_memory_bytes{selector}[{max(int(now - since), 1)}s]"
    access = log_analysis.access_log(lab.logs(service="traefik", since=since, limit=100_000))
    access = access[access["host"] == service(name).host_rule]
    noisy = log_analysis.abusive_clients(access, NOISY_FACTOR, NOISY_MIN_REQUESTS)
    status = lab.status()
    registered = set(lab.instances(name)["instance"])
    hung = status[(status["kind"] == name) & (status["state"] == "RUNNING")
                  & (status["uptime_s"] > HUNG_UPTIME_S)
                  & ~status["component"].isin(registered)]
    return Evidence(
        service=name,
        instance_error_ratio=recorded("instance", "lab_errors", "ratio_"),
        version_error_ratio=recorded("version", "lab_errors", "ratio_"),
        instance_p95_s=recorded("instance", "lab_request_duration_seconds", "p95_"),
        memory_range_mb={k: v / 2**20 for k, v in by(
            "lab_instance", f"max_over_time({memory}) - min_over_time({memory})").items()},
        noisy_clients=list(noisy.sort_values("requests", ascending=False)["client"]),
        unregistered_running=list(hung["component"]),
    )


def investigate(lab: Lab, name: str, since: float, timeout: float = 60) -> Truth:
    """Look at the telemetry of service `name` since `since` until it points at one answer
    (at most `timeout` seconds); returns it, for lab.gameday.answer(**vars(found))."""
    last: list[Evidence] = []

    def look() -> Truth | None:
        last[:] = [gather(lab, name, since)]
        return diagnose(last[0])

    return cast(Truth, wait_for(look, what=f"the telemetry of {name} to point at a cause",
                    timeout=timeout, interval=1.0,
                    diagnose=lambda: f"last evidence: {last[0] if last else None}",
                    hint="is the users' traffic flowing? (lab.gameday.start starts it)"))
