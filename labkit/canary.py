"""A canary with automated analysis: shift step by step, judge each step from Prometheus.

At each step the new version gets a larger weight; after `interval` seconds of the caller's
traffic the step is judged from the lab's per-version recording rules (topology.RULES, e.g.
10 s windows evaluated every 2 s):

    version:lab_requests:rate10s, version:lab_errors:rate10s,
    version:lab_request_duration_seconds:p95_rate10s

A rule sample at time t covers (t - window, t], and is evaluated up to one evaluation interval
late: only samples stamped SETTLE_SECONDS or more after a shift describe the new split alone,
so the earlier ones are discarded. The canary is judged against the baseline (the version it
replaces) over the same window; too few canary requests to judge counts as a failure (no
evidence, no promotion). A failed step shifts all traffic back to the baseline at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeGuard

import pandas as pd

from .errors import LabError
from .metrics import Prometheus
from .shifting import Weights
from .topology import RULES

SETTLE_SECONDS = RULES.window_s + RULES.evaluation_s  # after a shift, before samples count
DEFAULT_SLO = {
    "error_ratio": 0.01,  # the canary's error ratio may exceed the baseline's by this much
    "p95_ms": 250.0,  # the canary's p95 latency must stay below this
    "p95_ratio": 2.0,  # ... and below this multiple of the baseline's p95
}
# p95 from histogram buckets 1, 2.5, 5, 10 ms wide at echo's latencies: smaller differences
# between two versions are interpolation noise, not evidence
BUCKET_NOISE_MS = 5.0
REPORT_COLUMNS = [
    "step", "weight", "baseline_requests", "canary_requests", "baseline_error_ratio",
    "canary_error_ratio", "baseline_p95_ms", "canary_p95_ms", "decision", "reason",
]


@dataclass(frozen=True)
class Evidence:
    requests: float  # approximate: mean rate x seconds observed
    error_ratio: float
    p95_ms: float


@dataclass(frozen=True)
class Plan:
    steps: list[int]
    interval: float
    slo: dict[str, float]
    min_requests: int


def check_plan(steps: object, interval: object, slo: object, min_requests: object) -> Plan:
    """Everything checked before the first shift, each error naming what is valid."""
    if (not isinstance(steps, list | tuple) or not steps
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in steps)):
        raise LabError(f"steps must be a list of whole percentages, e.g. [5, 25, 50, 100]; "
                       f"got {steps!r}")
    if list(steps) != sorted(set(steps)) or steps[0] < 1 or steps[-1] != 100:
        raise LabError(f"steps must rise strictly from 1 or more and end at 100 (the "
                       f"promotion), e.g. [5, 25, 50, 100]; got {list(steps)}")
    if (isinstance(interval, bool) or not isinstance(interval, int | float)
            or not SETTLE_SECONDS + RULES.evaluation_s <= interval <= 600):
        raise LabError(
            f"interval must be a number of seconds from {SETTLE_SECONDS + RULES.evaluation_s} "
            f"to 600, got {interval!r}: after each shift a whole {RULES.window_s} s rate window "
            f"plus a rule evaluation ({SETTLE_SECONDS} s) must pass before the metrics show "
            f"the new split, and then at least one more sample")
    slo = {} if slo is None else slo
    if not isinstance(slo, dict):
        raise LabError(f"slo must be a dict with any of {', '.join(DEFAULT_SLO)}, got {slo!r}")
    unknown = sorted(set(slo) - set(DEFAULT_SLO))
    if unknown:
        raise LabError(f"unknown slo key {', '.join(map(repr, unknown))}; valid keys: "
                       + ", ".join(f"{k} (default {v:g})" for k, v in DEFAULT_SLO.items()))
    for key, value in slo.items():
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or value < 0):
            raise LabError(f"slo {key} must be a number >= 0, got {value!r}")
    if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 1:
        raise LabError(f"min_requests must be a whole number >= 1, got {min_requests!r}")
    return Plan(list(steps), float(interval), {**DEFAULT_SLO, **slo}, min_requests)


def measure(prometheus: Prometheus, service: str, start: float, end: float) -> dict[str, Evidence]:
    """Each version's evidence from the rule samples stamped in (start, end].

    The raw samples, by their own timestamps (a range selector), not a range query: if rule
    evaluation lags, a range query would fill in with an older sample from before the shift.
    """
    span = f"{int((end - start) * 1000)}ms"

    def series(metric: str, aggregation: str = "") -> pd.DataFrame:
        record = RULES.record("version", metric, aggregation)
        return prometheus.query(f'{record}{{service="{service}"}}[{span}]', end=end)

    rates, errors = series("lab_requests"), series("lab_errors")
    p95 = series("lab_request_duration_seconds", "p95_")
    observed = end - start + RULES.window_s
    evidence = {}
    for version, rate in rates.groupby("version")["value"] if len(rates) else ():
        failed = errors.loc[errors["version"] == version, "value"] if len(errors) else []
        total = rate.sum()
        latencies = p95.loc[p95["version"] == version, "value"].dropna() if len(p95) else []
        evidence[version] = Evidence(
            requests=rate.mean() * observed,
            # rate-weighted over the window: sum of error rates over sum of request rates
            error_ratio=float(sum(failed) / total) if total > 0 else math.nan,
            p95_ms=float(pd.Series(latencies).median() * 1000) if len(latencies) else math.nan,
        )
    return evidence


def judge(baseline: Evidence | None, canary: Evidence | None, plan: Plan) -> tuple[bool, str]:
    """(passed, why), comparing the canary with the SLO and with the baseline."""
    slo = plan.slo
    if canary is None or not canary.requests >= plan.min_requests:
        seen = 0 if canary is None else canary.requests
        return False, (f"too little evidence: about {seen:.0f} canary requests, at least "
                       f"{plan.min_requests} needed (is traffic flowing?)")
    allowed = slo["error_ratio"] + (baseline.error_ratio if _has(baseline, "error_ratio") else 0)
    if canary.error_ratio > allowed:
        return False, f"error ratio {canary.error_ratio:.1%} > {allowed:.1%} allowed"
    if canary.p95_ms > slo["p95_ms"]:
        return False, f"p95 {canary.p95_ms:.0f} ms > {slo['p95_ms']:g} ms allowed"
    if (_has(baseline, "p95_ms")
            and canary.p95_ms > slo["p95_ratio"] * baseline.p95_ms + BUCKET_NOISE_MS):
        return False, (f"p95 {canary.p95_ms:.1f} ms > {slo['p95_ratio']:g} x the baseline's "
                       f"{baseline.p95_ms:.1f} ms")
    return True, (f"error ratio {canary.error_ratio:.1%} <= {allowed:.1%}, "
                  f"p95 {canary.p95_ms:.1f} ms within limits")


def _has(evidence: Evidence | None, field: str) -> TypeGuard[Evidence]:
    if evidence is None or evidence.requests <= 0:
        return False
    return math.isfinite(getattr(evidence, field))


def run(
    plan: Plan,
    baseline: str,
    canary: str,
    shift: Callable[[Weights], object],
    observe: Callable[[float, float], dict[str, Evidence]],
    progress: Callable[[str], None],
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> pd.DataFrame:
    """Shift through the plan's steps, judging each; roll back to the baseline on a failure.
    Returns one row per step with the evidence and the decision."""
    rows = []
    for number, weight in enumerate(plan.steps, start=1):
        shift({baseline: 100 - weight, canary: weight} if weight < 100 else {canary: 100})
        shifted = clock()
        # one more evaluation period: the last sample of the interval is written after it
        sleep(max(0.0, shifted + plan.interval + RULES.evaluation_s - clock()))
        evidence = observe(shifted + SETTLE_SECONDS, shifted + plan.interval)
        before, after = evidence.get(baseline), evidence.get(canary)
        passed, reason = judge(before, after, plan)
        decision = ("promote" if weight == 100 else "continue") if passed else "rollback"
        rows.append({
            "step": number, "weight": weight,
            "baseline_requests": _field(before, "requests"),
            "canary_requests": _field(after, "requests"),
            "baseline_error_ratio": _field(before, "error_ratio"),
            "canary_error_ratio": _field(after, "error_ratio"),
            "baseline_p95_ms": _field(before, "p95_ms"),
            "canary_p95_ms": _field(after, "p95_ms"),
            "decision": decision, "reason": reason,
        })
        progress(f"canary {canary} at {weight}%: {decision} ({reason})")
        if not passed:
            shift({baseline: 100})
            progress(f"rolled back: all traffic to {baseline}")
            break
    report = pd.DataFrame(rows, columns=REPORT_COLUMNS)
    report.attrs = {"baseline": baseline, "canary": canary, "outcome": rows[-1]["decision"]}
    return report


def _field(evidence: Evidence | None, name: str) -> float:
    return math.nan if evidence is None else getattr(evidence, name)
