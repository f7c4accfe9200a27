"""Notebook 03's exercises: health checks, liveness and readiness."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pandas as pd

from ... import durations
from ...gateway import HEALTH_CHECK_INTERVAL, api_get
from ...topology import LEASE_TTL_SECONDS
from ..exercises import Exercise, Findings, number, share
from .measure import (
    ECHO_URL,
    close_to,
    error_share,
    eventually,
    faulted_instances,
    policy_settings,
    registered,
)

if TYPE_CHECKING:
    from ...lab import Lab

HUNG = 2
CLIENT_TIMEOUT = 1.0  # the notebook's client_timeout
LONG_TIMEOUT = 5.0  # the exercise's client_timeout
WINDOW_TOLERANCE = 0.6  # s between the learner's window and the check's (measured 0.54-1.00)
WAIT_TOLERANCE = 0.5  # s between the learner's wait and the check's (measured 5.01-5.02)
SLOW = 3
WARM_UP = 5.0  # the exercise's lab.slow_start("echo", 3, 5)


def applied_interval(lab: Lab) -> str | None:
    """The health check interval Traefik applies to echo, read from its API."""
    shown = api_get(lab.gateway.api, "/api/http/services/echo@etcd") or {}
    return shown.get("loadBalancer", {}).get("healthCheck", {}).get("interval")


def ready_for_a_fault(lab: Lab, found: Findings, instance: int) -> bool:
    """No fault in force and `instance` registered, or a sentence saying what to do."""
    faults = faulted_instances(lab, "echo")
    listed = registered(lab, "echo")
    return found.require(
        not faults and f"echo-{instance}" in listed,
        f"the check faults echo-{instance}; faults in force on echo "
        f"({'; '.join(faults) or 'none'}), registered {sorted(listed)}: resume or heal "
        "them first (lab.heal() also restores the declared health check)")


def back_in_registry(lab: Lab, instance: int, within: float) -> bool:
    """Whether `instance` registers again within `within` s (the lab is left as found)."""
    return eventually(lambda: f"echo-{instance}" in registered(lab, "echo"),
                      timeout=within, what=f"echo-{instance} to register again")


def hang(lab: Lab, client_timeout: float, load_seconds: float, hung_for: float
         ) -> tuple[pd.DataFrame, float]:
    """Load through the gateway while echo-HUNG hangs for `hung_for` s from 0.5 s in; the
    requests, and when the hang began on their clock."""
    traffic = lab.start_load(ECHO_URL, rps=50, seconds=load_seconds, timeout=client_timeout)
    time.sleep(0.5)
    hung_at = time.time()
    lab.pause("echo", HUNG)
    try:
        time.sleep(hung_for)
        frame = traffic.result()
    finally:
        lab.resume("echo", HUNG)
    back_in_registry(lab, HUNG, LEASE_TTL_SECONDS + 2)
    return frame, hung_at - frame.attrs["started_at"]


def faster_health_check(lab: Lab, window: object) -> Findings:
    said = number(window, "window", 0, 10, "the error window in seconds")
    found = Findings()
    interval = applied_interval(lab)
    halved = durations.seconds(HEALTH_CHECK_INTERVAL) / 2
    if not found.require(interval is not None and durations.seconds(interval) == halved,
                         f"Traefik checks echo's health every {interval or 'never'}: put "
                         f"{halved * 1000:.0f}ms under traefik/http/services/echo/"
                         "loadBalancer/healthCheck/interval in etcd"):
        return found
    if not ready_for_a_fault(lab, found, HUNG):
        return found
    frame, hung_at = hang(lab, CLIENT_TIMEOUT, load_seconds=3.5, hung_for=3.0)
    failed = frame[(frame["status"] != 200) & (frame["start"] >= hung_at)]
    measured = float(failed["start"].max() - hung_at) if len(failed) else 0.0
    found.seen.append(f"health checks every {interval}; echo-{HUNG} hung under 50 rps: "
                      f"{len(failed)} requests failed, the last one sent {measured:.2f} s "
                      "after the hang began")
    found.require(close_to(said, measured, WINDOW_TOLERANCE),
                  f"you said {said:.2f} s: measure it as the notebook does (the last failed "
                  "request's start minus the hang's), with the new interval in force")
    return found


def long_client_timeout(lab: Lab, waited: object) -> Findings:
    said = number(waited, "waited", 0, 60, "how long the requests to the hung instance waited, "
                                           "in seconds")
    found = Findings()
    timeout = policy_settings(lab, "echo", "timeout")
    if not found.require(timeout is None, "echo has a gateway timeout (lab.policies): "
                                          "lab.policies.clear('echo') first"):
        return found
    if not ready_for_a_fault(lab, found, HUNG):
        return found
    # hung for longer than the client waits: the stuck requests end on the client's timeout
    frame, _ = hang(lab, LONG_TIMEOUT, load_seconds=1.5, hung_for=0.0)
    stuck = frame[frame["status"] != 200]
    measured = float(stuck["latency_ms"].max() / 1000) if len(stuck) else 0.0
    found.seen.append(f"with a {LONG_TIMEOUT:g} s client timeout, {len(stuck)} of {len(frame)} "
                      f"requests failed after waiting up to {measured:.2f} s; the others' p50 "
                      f"was {frame[frame['status'] == 200]['latency_ms'].median():.0f} ms")
    found.require(len(stuck) > 0 and close_to(said, measured, WAIT_TOLERANCE),
                  f"you said they waited {said:g} s: look at the slowest requests in the "
                  "latency plot, or at the failed ones' latency_ms")
    return found


def warm_up_unnoticed(lab: Lab, failed: object) -> Findings:
    said = share(failed, "failed")
    found = Findings()
    if not ready_for_a_fault(lab, found, SLOW):
        return found
    traffic = lab.start_load(ECHO_URL, rps=50, seconds=WARM_UP + 1)
    time.sleep(0.5)
    lab.slow_start("echo", SLOW, WARM_UP)
    restarted_at = time.time()  # the new process runs, unready; the old one has drained
    frame = traffic.result()
    back = back_in_registry(lab, SLOW, WARM_UP + LEASE_TTL_SECONDS)
    started = frame.attrs["started_at"]
    warming = frame[(frame["start"] + started > restarted_at)
                    & (frame["start"] + started < restarted_at + WARM_UP - 1)]
    measured = error_share(frame)
    found.seen.append(f"echo-{SLOW} restarted, unready for {WARM_UP:g} s, under 50 rps: "
                      f"{measured:.1%} of {len(frame)} requests failed; "
                      f"{int((warming['instance'] == f'echo-{SLOW}').sum())} reached it while "
                      f"it warmed up; registered again afterwards: {back}")
    found.require(back, f"echo-{SLOW} did not register again after its warm-up: lab.heal()")
    found.require(close_to(said, measured, 0.01),
                  f"you said {said:.1%} fail: run lab.slow_start('echo', {SLOW}, "
                  f"{WARM_UP:g}) under lab.start_load and count the failures")
    return found


EXERCISES = (
    Exercise(
        "03.1", "halve the health check interval: the error window after a hang?",
        "Shorter, by up to half a second: the gateway notices a hang at its next check plus "
        "that check's timeout (500 ms), so the window is about one interval plus one timeout, "
        "now 0.5 + 0.5 s at most instead of 1 + 0.5 s. The cost: twice the health check "
        "requests on every instance, and on a busy machine a slow answer is mistaken for a "
        "hang sooner. lab.heal() restores the declared interval.",
        faster_health_check, ("window",)),
    Exercise(
        "03.2", f"a {LONG_TIMEOUT:g} s client timeout: what happens to the requests sent to "
        "the hung instance?",
        f"They wait the full {LONG_TIMEOUT:g} s, then fail: the gateway has no timeout of its "
        "own, so a request already handed to the hung instance stays there until the client "
        "gives up. The latency plot shows a few points at the timeout while everything else "
        "stays fast. Health checks stop new requests from going there; only a timeout "
        "(gateway or client) bounds the ones already sent.",
        long_client_timeout, ("waited",)),
    Exercise(
        "03.3", f"slow_start(echo-{SLOW}, {WARM_UP:g} s) under load: which share fails?",
        "None: the restart is graceful (echo-3 deregisters, then drains), and the new process "
        "registers only once it is ready, so the gateway never sends it a request while it "
        "warms up. Readiness tied to registration makes a slow start invisible to clients.",
        warm_up_unnoticed, ("failed",)),
)
