"""Notebook 05's exercises: timeouts and retries."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ... import durations
from ..exercises import Exercise, Findings, number, share
from .measure import ECHO_URL, close_to, error_share, faulted_instances, policy_settings

if TYPE_CHECKING:
    from ...lab import Lab

EXERCISE_TIMEOUT = "50ms"
NAIVE_ATTEMPTS = 5  # the notebook's attempts_cap
STORM_ERROR_RATE = 0.95
CRASHED = 2
MAX_CRASH_ERRORS = 0.01  # the notebook's bound for a crash behind retries


def healthy_timeout(lab: Lab, failed: object) -> Findings:
    said = share(failed, "failed")
    found = Findings()
    timeout = policy_settings(lab, "echo", "timeout") or {}
    configured = timeout.get("responseHeaderTimeout")
    found.require(
        configured is not None and durations.seconds(configured) == durations.seconds(
            EXERCISE_TIMEOUT),
        f"echo's gateway timeout is {configured or 'not set'}: "
        f"lab.policies.timeout('echo', response_header='{EXERCISE_TIMEOUT}')")
    faults = faulted_instances(lab, "echo")
    found.require(not faults, f"faults in force on echo ({'; '.join(faults)}): the exercise "
                              "is about healthy instances, lab.heal() first")
    if found.missing:
        return found
    frame = lab.load(ECHO_URL, rps=50, seconds=3)
    measured = error_share(frame)
    found.seen.append(f"with a {EXERCISE_TIMEOUT} timeout and no fault, {measured:.1%} of "
                      f"{len(frame)} requests failed; their p99 was "
                      f"{frame['latency_ms'].quantile(0.99):.0f} ms")
    # a busy machine pushes a few healthy requests past 50 ms: measured 0-4.7% in full suites
    found.require(close_to(said, measured, 0.05),
                  f"you said {said:.1%} fail; measured now: {measured:.1%}. Measure with "
                  f"lab.load('{ECHO_URL}', rps=50, seconds=3)")
    return found


def storm_attempts(lab: Lab, attempts: object) -> Findings:
    attempts = number(attempts, "attempts", 1, NAIVE_ATTEMPTS,
                      "the mean number of attempts per request")
    found = Findings()
    frame = lab.load(ECHO_URL, rps=100, seconds=2)
    p = error_share(frame)
    found.seen.append(f"echo fails {p:.1%} of {len(frame)} requests through the gateway")
    if not found.require(
            p >= 0.9, f"echo should fail about {STORM_ERROR_RATE:.0%} of requests: fault every "
                      f"instance with error_rate={STORM_ERROR_RATE} (the notebook's storm cell "
                      f"with storm_error_rate = {STORM_ERROR_RATE})"):
        return found
    expected = (1 - p ** NAIVE_ATTEMPTS) / (1 - p)
    found.seen.append(f"at that rate a client trying up to {NAIVE_ATTEMPTS} times makes "
                      f"(1 - p^{NAIVE_ATTEMPTS}) / (1 - p) = {expected:.2f} attempts a request")
    found.require(close_to(attempts, expected, 0, 0.15),
                  f"you said {attempts:.2f} attempts a request: count them with the "
                  "notebook's naive_retries, or work them out from the formula")
    return found


def retried_crash(lab: Lab) -> Findings:
    found = Findings()
    retry = policy_settings(lab, "echo", "retry")
    found.require(retry is not None,
                  "echo has no retry policy: lab.policies.retry('echo', attempts=3)")
    faults = faulted_instances(lab, "echo")
    found.require(not faults, f"faults in force on echo ({'; '.join(faults)}): lab.heal() "
                              "first, so that only the kill fails requests")
    if found.missing or retry is None:
        return found
    traffic = lab.start_load(ECHO_URL, rps=50, seconds=6)
    time.sleep(2)
    lab.kill("echo", CRASHED, restart=True)
    frame = traffic.result()
    rate = error_share(frame)
    settings = ", ".join(f"{k}={v}" for k, v in retry.items())
    found.seen.append(f"retries on ({settings}); killing echo-{CRASHED} (restarted at once) "
                      f"under 50 rps failed {rate:.2%} of {len(frame)} requests")
    found.require(rate <= MAX_CRASH_ERRORS,
                  f"retries are on, but {rate:.2%} of requests still failed: a retry can land "
                  "on the dead instance again until the gateway drops it; more attempts "
                  "make that rarer")
    return found


EXERCISES = (
    Exercise(
        "05.1", f"a {EXERCISE_TIMEOUT} timeout on healthy instances: which share fails?",
        "Hardly any: healthy requests take a few milliseconds, far under 50 ms, so the timeout "
        "costs them nothing. A timeout is free above the healthy tail (p99, p99.9) and fails "
        "healthy requests below it: choose it from measured percentiles, with headroom for a "
        "busy moment.",
        healthy_timeout, ("failed",)),
    Exercise(
        "05.2", f"naive retries against a service failing {STORM_ERROR_RATE:.0%}: attempts "
        "per request?",
        "About 4.5: with p = 0.95 almost every request uses all 5 attempts. Exponential "
        "backoff spreads those attempts over time (the service gets moments to recover), but "
        "does not reduce their number: only fewer attempts or a retry budget does.",
        storm_attempts, ("attempts",)),
    Exercise(
        "05.3", "with retries on, a kill with restart=True: do errors remain?",
        "Few or none: a request that could not reach echo-2 (refused or reset connection) is "
        "retried on another instance. One that remains was already inside echo-2 when it died: "
        "it reached a server, so the gateway does not retry it, since it cannot know whether "
        "the work was done.",
        retried_crash),
)
