"""Notebook 06's exercises: the circuit breaker."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ... import durations
from ..exercises import Exercise, Findings, number, share
from .measure import (
    ECHO_URL,
    close_to,
    every_instance_with,
    instances_with,
    policy_settings,
    registered,
)

if TYPE_CHECKING:
    from ...lab import Lab

CODE_EXPRESSION = "ResponseCodeRatio(500, 600, 0, 600) > 0.5"  # the notebook's expression
LATENCY_EXPRESSION = "LatencyAtQuantileMS(50.0) > 100"
SHORT_FALLBACK = "1s"
RPS = 30  # the notebook's rate
SECONDS = 6  # of load: outlasts a 3 s fallback, and holds several trials of a 1 s one
REJECTED = 503  # Traefik answers it itself while the breaker is open; echo's failures are 500s
MIN_ANSWERED = 12  # responses from echo that make its 5xx ratio worth judging
TRIAL_GAP = 0.5  # s: requests let through closer together than this are one trial


def breaker(lab: Lab, found: Findings, watching: str, example: str) -> dict[str, str] | None:
    """echo's breaker settings if its expression watches `watching`, else None and what to
    set noted in `found`."""
    settings = policy_settings(lab, "echo", "circuit-breaker")
    expression = (settings or {}).get("expression")
    shown = f"watches {expression}" if expression else "is not set"
    if not found.require(expression is not None and watching in expression,
                         f"echo's breaker {shown}: lab.policies.circuit_breaker('echo', "
                         f"'{example}')"):
        return None
    return settings


def one_failing(lab: Lab, ratio: object) -> Findings:
    said = share(ratio, "ratio")
    found = Findings()
    breaker(lab, found, "ResponseCodeRatio", CODE_EXPRESSION)
    failing = instances_with(lab, "echo", "error_rate")
    found.require(failing == {"echo-1"},
                  f"only echo-1 should fail, failing now: {', '.join(sorted(failing)) or 'none'}"
                  ": lab.heal(), then lab.fault('echo', 1, error_rate=1.0)")
    if found.missing:
        return found
    # long enough to outlast the notebook's fallback (3 s): when traffic starts, a check period
    # with a handful of requests can pass 0.5 by chance and open the breaker for a while
    frame = lab.load(ECHO_URL, rps=RPS, seconds=SECONDS)
    answered = frame[frame["status"] != REJECTED]["status"]
    rejected = float((frame["status"] == REJECTED).mean())
    found.seen.append(f"the breaker rejected {rejected:.0%} of {len(frame)} requests itself "
                      f"({REJECTED})")
    if not found.require(len(answered) >= MIN_ANSWERED,
                         f"only {len(answered)} requests reached echo: the breaker stayed open "
                         "(a check period with few requests can pass 0.5 by chance); check "
                         "again"):
        return found
    failed = float(answered.between(500, 599).mean())
    found.seen.append(f"with echo-1 failing among {len(registered(lab, 'echo'))} instances, "
                      f"{failed:.0%} of the {len(answered)} responses from echo were 5xx")
    found.require(close_to(said, failed, 0.1),
                  f"you said a ratio of {said:.0%}: work it out from how many of echo's "
                  f"instances fail, or measure it with lab.load('{ECHO_URL}', rps={RPS}, "
                  f"seconds={SECONDS})")
    return found


def slow_breaker(lab: Lab) -> Findings:
    found = Findings()
    breaker(lab, found, "LatencyAtQuantileMS", LATENCY_EXPRESSION)
    every_instance_with(found, lab, "echo", "latency", "lab.fault('echo', n, latency='300ms')")
    failing = instances_with(lab, "echo", "error_rate")
    found.require(not failing, f"{', '.join(sorted(failing))} fail: the exercise is about a slow "
                               "but not failing service, lab.heal() first")
    if found.missing:
        return found
    frame = lab.load(ECHO_URL, rps=RPS, seconds=3)
    rejected, served = frame[frame["status"] == REJECTED], frame[frame["status"] == 200]
    found.seen.append(f"under {RPS} rps the breaker rejected {len(rejected)} of {len(frame)} "
                      f"requests in {rejected['latency_ms'].median():.0f} ms; echo served "
                      f"{len(served)} in {served['latency_ms'].median():.0f} ms (median)")
    found.require(len(rejected) >= len(frame) / 2,
                  f"the breaker let {len(frame) - len(rejected)} of {len(frame)} requests through:"
                  " is echo's median latency above the expression's threshold?")
    return found


def trials(frame: pd.DataFrame) -> pd.Series:
    """When the open breaker let requests through to echo: the starts of each trial."""
    opened = frame[frame["status"] == REJECTED]["start"].min()
    through = frame[(frame["start"] > opened) & (frame["status"] != REJECTED)]["start"]
    through = through.sort_values()
    return through[through.diff().fillna(TRIAL_GAP + 1) > TRIAL_GAP]


def trial_interval(lab: Lab, every: object) -> Findings:
    said = number(every, "every", 0, 60, "the seconds between two trials of the open breaker")
    found = Findings()
    settings = breaker(lab, found, "", CODE_EXPRESSION) or {}  # any expression will do
    fallback = settings.get("fallbackDuration")
    found.require(fallback is None or durations.seconds(fallback) == durations.seconds(
                      SHORT_FALLBACK),
                  f"the breaker's fallback is {fallback}: set fallback_duration='{SHORT_FALLBACK}'"
                  " in lab.policies.circuit_breaker")
    every_instance_with(found, lab, "echo", "error_rate",
                        "lab.fault('echo', n, error_rate=1.0), so that echo keeps failing")
    if found.missing:
        return found
    frame = lab.load(ECHO_URL, rps=RPS, seconds=SECONDS)
    if not found.require((frame["status"] == REJECTED).any(),
                         f"the breaker never opened in {SECONDS} s of {RPS} rps: does its "
                         "expression match echo's failures?"):
        return found
    starts = trials(frame)
    if not found.require(len(starts) >= 3,
                         f"the open breaker let requests through only {len(starts)} times "
                         f"in {SECONDS} s: is its check period far longer than its fallback?"):
        return found
    measured = float(starts.diff().median())
    found.seen.append(f"with a {fallback} fallback and echo failing, the open breaker let "
                      f"requests through {len(starts)} times in {SECONDS} s, every "
                      f"{measured:.1f} s (median)")
    found.require(close_to(said, measured, 0.5, 0.25),
                  f"you said every {said:g} s: count the 500s between the {REJECTED}s of "
                  f"lab.load('{ECHO_URL}', rps={RPS}, seconds={SECONDS}), or add up what the "
                  "breaker waits")
    return found


EXERCISES = (
    Exercise(
        "06.1", "only echo-1 fails: which response-code ratio, and does the breaker open?",
        "About a third (1 of 3 instances fails every request), under the expression's 0.5: the "
        "breaker stays closed and a third of the requests keep failing (though when traffic "
        "starts, a check period with a handful of requests can pass 0.5 by chance and open it "
        "for a fallback: Traefik's expressions have no minimum request count). A per-service "
        "breaker sees the service's average, so one bad instance among good ones is a job for "
        "health checks or outlier detection, not for the breaker.",
        one_failing, ("ratio",)),
    Exercise(
        "06.2", f"a breaker on '{LATENCY_EXPRESSION}' with a slow, not failing, echo",
        "Against slowness: every request still succeeds, but waiting for it ties up the "
        "caller's threads and connections (and piles work onto the slow service). The open "
        "breaker fails them in a millisecond instead, so a slow dependency cannot make its "
        "callers slow; the price is rejecting requests that would have succeeded, late.",
        slow_breaker),
    Exercise(
        "06.3", f"fallback '{SHORT_FALLBACK}' while echo keeps failing: how often does the "
        "breaker try?",
        "About every 1.5 s: after the 1 s fallback it lets a few requests through (recovering), "
        "they fail, and it opens again at its next check (every check period, 1 s). A short "
        "fallback notices recovery sooner, at the price of more trial requests on a service "
        "that may still be down.",
        trial_interval, ("every",)),
)
