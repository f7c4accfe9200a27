"""Notebook 12's exercises: blue/green and canary."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

import pandas as pd

from ... import canary
from ...errors import LabError
from ...topology import RULES
from ..exercises import Exercise, Findings, choice, number, said_text, share
from .measure import ECHO_URL, close_to, faulted_instances

if TYPE_CHECKING:
    from ...lab import Lab

GREEN = "v2"
SHORT_INTERVAL = 8
LOW_RPS = 10
STEP_PCT = 10
RECENT = "2m"  # how far back the check looks for the learner's canary
# the shortest interval labkit accepts: a whole rate window after the shift, then a sample
MIN_INTERVAL = canary.SETTLE_SECONDS + RULES.evaluation_s


def green(lab: Lab, found: Findings) -> pd.Series | None:
    """v2's row of lab.versions('echo') if v2 runs, else None after noting how to deploy it."""
    versions = lab.versions("echo").set_index("version")
    running = versions.at[GREEN, "running"] if GREEN in versions.index else 0
    if not found.require(running > 0, f"no {GREEN} instance runs: lab.deploy('echo', "
                                      f"'{GREEN}', replicas=2)"):
        return None
    return versions.loc[GREEN]


def latency_rollback(lab: Lab, line: object) -> Findings:
    said = choice(line, "line", list(canary.DEFAULT_SLO))
    found = Findings()
    if green(lab, found) is None:
        return found
    v2 = set(lab.instances("echo").query(f"version == '{GREEN}'")["instance"])
    slow = {f.split(":")[0] for f in faulted_instances(lab, "echo") if ": latency" in f}
    if not found.require(v2 <= slow, f"{GREEN} instances with a latency fault: "
                                     f"{', '.join(sorted(slow & v2)) or 'none'} of "
                                     f"{len(v2)}: lab.fault('echo', slot, latency='300ms') "
                                     f"on each, then run the canary"):
        return found

    def worst(metric: str, aggregation: str = "") -> float:
        """v2's highest value over the last few minutes: the canary's step."""
        record = RULES.record("version", metric, aggregation)
        found_ = lab.metrics(f'max_over_time({record}{{service="echo", version="{GREEN}"}}'
                             f"[{RECENT}])")
        return float(found_["value"].iat[0]) if len(found_) else float("nan")

    p95 = 1000 * worst("lab_request_duration_seconds", "p95_")
    errors = worst("lab_errors", "ratio_")
    if not found.require(p95 == p95, f"{GREEN} served no traffic in the last {RECENT}: run "
                                     "the canary with the latency fault in force"):
        return found
    found.seen.append(f"{GREEN} during your canary (last {RECENT}): p95 up to {p95:.0f} ms, "
                      f"error ratio up to {errors:.1%}")
    # the SLO lines in the order canary.judge tests them: the first one broken rolls back
    slo = canary.DEFAULT_SLO
    broken = [key for key, broke in (("error_ratio", errors > slo["error_ratio"]),
                                     ("p95_ms", p95 > slo["p95_ms"])) if broke]
    if not found.require(bool(broken), f"{GREEN}'s evidence breaks no SLO line: make its "
                                       "latency larger than the p95_ms line"):
        return found
    found.require(said == broken[0], f"you said {said}: read the reason column of the "
                                     "canary's report")
    return found


def thin_evidence(lab: Lab, requests: object) -> Findings:
    said = number(requests, "requests", 0, 10_000, "canary requests in one interval")
    found = Findings()
    v2 = green(lab, found)
    if v2 is None or not found.require(
            v2["routed_by"] == "split" and v2["weight_pct"] == STEP_PCT,
            f"{GREEN} gets {v2['weight_pct']:g}% ({v2['routed_by']}): the exercise is about "
            f"a {STEP_PCT}% step, lab.shift('echo', 'tenth', to='{GREEN}')"):
        return found
    seconds = 3
    frame = lab.load(ECHO_URL, rps=LOW_RPS, seconds=seconds)
    per_second = (frame["version"] == GREEN).sum() / seconds
    expected = per_second * MIN_INTERVAL
    needed = inspect.signature(lab.canary).parameters["min_requests"].default
    found.seen.append(f"at {LOW_RPS} rps with {STEP_PCT}% to {GREEN}, {GREEN} got "
                      f"{per_second:.1f} requests/s: about {expected:.0f} in a {MIN_INTERVAL} s "
                      f"interval; the canary needs {needed}")
    found.require(close_to(said, expected, 3, 1 / 4),
                  f"you said {said:.0f} canary requests an interval: count them as rps x "
                  "weight x interval, or send the load and count the versions")
    return found


def fleet_routing(lab: Lab, v2_share: object) -> Findings:
    said = share(v2_share, "v2_share")
    found = Findings()
    v2 = green(lab, found)
    if v2 is None or not found.require(
            v2["routed_by"] == "fleet",
            f"traffic is split by version ({GREEN} {v2['weight_pct']:g}%): "
            "lab.shift('echo', 'off')"):
        return found
    frame = lab.load(ECHO_URL, rps=50, seconds=2)
    measured = float((frame["version"] == GREEN).mean())
    found.seen.append(f"with the split off, {GREEN} served {measured:.0%} of {len(frame)} "
                      f"requests; the registry lists "
                      + ", ".join(f"{n} {v}" for n, v in
                                  lab.instances("echo")["version"].value_counts().items()))
    found.require(close_to(said, measured, 0.05),
                  f"you said {GREEN} serves {said:.0%}: count the versions of a load's answers")
    return found


def short_interval(lab: Lab, refusal: object) -> Findings:
    said = said_text(refusal, "refusal", f"what lab.canary(..., interval={SHORT_INTERVAL}) "
                     "said")
    found = Findings()
    try:  # what lab.canary checks before it shifts anything
        canary.check_plan([5, 25, 50, 100], SHORT_INTERVAL, None, 50)
        labkit_says = None
    except LabError as refused:
        labkit_says = said_text(refused, "refusal", "labkit's own refusal")
    if not found.require(labkit_says is not None,
                         f"labkit accepts interval={SHORT_INTERVAL} now: nothing to compare"):
        return found
    found.require(said == labkit_says,
                  f"that is not what lab.canary(..., interval={SHORT_INTERVAL}) raises: call "
                  "it and pass the LabError it raises (or its text)")
    return found


EXERCISES = (
    Exercise(
        "12.1", f"canary_interval = {SHORT_INTERVAL} s: what does labkit say?",
        f"labkit refuses it: the interval must be at least {MIN_INTERVAL} s. After a shift the "
        f"{RULES.window_s} s rate window still holds the previous split's requests, and the "
        f"rules are evaluated every {RULES.evaluation_s} s: evidence read {SHORT_INTERVAL} s "
        "after the shift mostly describes the previous step, so a canary would be promoted "
        "(or rolled back) on traffic it never served.",
        short_interval, ("refusal",)),
    Exercise(
        "12.2", "a 300 ms latency fault on v2: which SLO line rolls it back?",
        "p95_ms: v2 fails nothing, so the error ratio line holds, but its p95 (about 300 ms) "
        "is above the 250 ms line. Lower p95_ms below a healthy v2's p95 (a few ms) and the "
        "same line rolls back a healthy version: an SLO must sit above the normal tail with "
        "headroom, like a timeout.",
        latency_rollback, ("line",)),
    Exercise(
        "12.3", f"at {LOW_RPS} rps and a {STEP_PCT}% step: canary requests per interval?",
        f"About {LOW_RPS * STEP_PCT // 100 * MIN_INTERVAL}: {LOW_RPS} rps x {STEP_PCT}% x "
        f"{MIN_INTERVAL} s, under the 50 the canary needs, so it rolls back for too little "
        "evidence. That is the right call: no evidence is no promotion. Give it more traffic, "
        "a longer interval or a larger first step, never a lower bar.",
        thin_evidence, ("requests",)),
    Exercise(
        "12.4", "lab.shift('echo', 'off'): who serves now?",
        "Every registered instance, both versions, in round robin: with 3 of v1 and 2 of v2, "
        "v2 serves 40%. A rolling upgrade needs exactly that: it replaces instances one by "
        "one, and each new one should take its share as soon as it is registered, not wait "
        "for a version split.",
        fleet_routing, ("v2_share",)),
)
