"""Notebook 18's exercises: resource limits."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pandas as pd

from ..exercises import Exercise, Findings, number, share, yes_no
from .measure import (
    ECHO_URL,
    close_to,
    error_share,
    eventually,
    faulted_instances,
    policy_settings,
)

if TYPE_CHECKING:
    from ...lab import Lab

TIGHT_LIMIT_MB = 64
LEAK_MB_PER_S = 40  # the notebook's leak
WHOLE_CORE = 1.0  # 18.3's CPU limit: as much as the hog wants
HOG_RPS, HOG_SECONDS = 100, 4.0  # the notebook's CPU experiment
# "still throttled": held back for more than a tenth of the run. Measured at a 1.0 limit:
# 0.0-0.01 s of 4 s (the GIL keeps the process under one core); at 0.2: 4 s of 4
THROTTLED_SHARE = 0.1


def echo_1(lab: Lab, column: str) -> float | None:
    """echo-1's value in lab.limits() ("memory_limit_mb", "memory_mb"); None: unlimited."""
    value = lab.limits("echo").set_index("instance").loc["echo-1", column]
    return None if value is None or value != value else float(value)  # NaN: unlimited


def echo_1_pid(lab: Lab) -> int | None:
    """echo-1's pid; None while supervisord restarts it."""
    pid = lab.status().set_index("component").loc["echo-1", "pid"]
    return None if pid is None or pid != pid else int(pid)  # NaN: not running


def leak_under_load(lab: Lab, seconds: float) -> tuple[pd.DataFrame, bool]:
    """The notebook's experiment: load through the gateway while echo-1 leaks from 1 s in.
    Returns the requests, and whether echo-1 was restarted (a new pid) before the load
    ended; a leak that outlives the load is healed, so that no fault stays behind."""
    before = echo_1_pid(lab)
    traffic = lab.start_load(ECHO_URL, rps=50, seconds=seconds)
    time.sleep(1)
    lab.fault("echo", 1, leak_mb_per_s=LEAK_MB_PER_S)
    restarted = eventually(lambda: echo_1_pid(lab) != before, what="echo-1 to meet its limit",
                           timeout=seconds - 1)
    frame = traffic.result()
    if not restarted:
        lab.heal()
    return frame, restarted


def tight_limit(lab: Lab, headroom_mb: object) -> Findings:
    said = number(headroom_mb, "headroom_mb", 0, 10_000, "echo-1's limit minus its memory, MiB")
    found = Findings()
    limit = echo_1(lab, "memory_limit_mb")
    if not found.require(limit == TIGHT_LIMIT_MB,
                         f"echo-1's memory limit is {limit or 'not set'}: "
                         f"lab.limits('echo', memory='{TIGHT_LIMIT_MB}M')") or limit is None:
        return found
    used = echo_1(lab, "memory_mb") or 0.0
    found.seen.append(f"echo-1: limit {limit:.0f} MiB, resident {used:.0f} MiB, so "
                      f"{limit - used:.0f} MiB of headroom")
    found.require(close_to(said, limit - used, 8),
                  f"you said {said:.0f} MiB: read memory_limit_mb and memory_mb in "
                  "lab.limits('echo')")
    return found


def restart_without_retries(lab: Lab, failed: object) -> Findings:
    said = share(failed, "failed")
    found = Findings()
    retry = policy_settings(lab, "echo", "retry")
    found.require(retry is None, f"echo still retries ({retry}): lab.policies.clear('echo')")
    found.require(echo_1(lab, "memory_limit_mb") is not None,
                  "echo-1 has no memory limit, so the leak never meets one: "
                  "lab.limits('echo', memory='128M')")
    faults = faulted_instances(lab, "echo")
    found.require(not faults, f"faults in force on echo ({'; '.join(faults)}): lab.heal(), "
                              "then set the limit again")
    if found.missing:
        return found
    frame, restarted = leak_under_load(lab, seconds=12)
    measured = error_share(frame)
    found.seen.append(f"echo-1 leaking {LEAK_MB_PER_S} MiB/s without retries: "
                      f"{'restarted' if restarted else 'not restarted'}; {measured:.2%} of "
                      f"{len(frame)} requests failed")
    if not found.require(restarted, "echo-1 was not restarted within the load: lower its "
                                    "memory limit (lab.limits('echo', memory='128M'))"):
        return found
    # a restart fails a handful of requests, which varies from run to run: the answer must
    # have the right size, not the same count
    found.require(measured / 3 - 0.005 <= said <= 3 * measured + 0.01,
                  f"you said {said:.2%}; measured now: {measured:.2%}. Count the non-200 "
                  "rows of the notebook's load")
    return found


def hog_at_a_whole_core(lab: Lab, throttled: object) -> Findings:
    said = yes_no(throttled, "throttled", "is echo-1 still held back at its quota?")
    found = Findings()
    limits = lab.limits("echo").set_index("instance")
    if not found.require(bool(limits["cpu_enforced"].all()),
                         "CPU limits are not enforced here (no cgroups: lab.limits() says "
                         "cpu_enforced = False), so nothing can be throttled"):
        return found
    limit = echo_1(lab, "cpu_limit")
    if not found.require(limit == WHOLE_CORE, f"echo-1's CPU limit is {limit or 'not set'}: "
                                              f"lab.limits('echo', cpu={WHOLE_CORE})"):
        return found
    # the notebook's experiment, once more: echo-1 burns a core under load
    before = echo_1(lab, "cpu_throttled_s") or 0.0
    lab.fault("echo", 1, cpu_burn=1.0)
    try:
        frame = lab.load(ECHO_URL, rps=HOG_RPS, seconds=HOG_SECONDS)
    finally:
        lab.fault("echo", 1, cpu_burn=0)
    held = (echo_1(lab, "cpu_throttled_s") or 0.0) - before
    strategy = (policy_settings(lab, "echo", "strategy") or {}).get("strategy", "wrr")
    own = frame[frame["instance"] == "echo-1"]["latency_ms"].median()
    others = frame[~frame["instance"].isin(["echo-1", ""])]["latency_ms"].median()
    its_share = (frame["instance"] == "echo-1").mean()
    found.seen.append(f"echo-1 burning CPU under a {WHOLE_CORE:g}-core limit, {HOG_RPS} rps for "
                      f"{HOG_SECONDS:g} s: throttled {held:.2f} s ({held / HOG_SECONDS:.0%} of "
                      f"the run); with {strategy} it got {its_share:.0%} of the requests, p50 "
                      f"{own:.1f} ms against its neighbours' {others:.1f} ms")
    still = held / HOG_SECONDS > THROTTLED_SHARE
    found.require(said == still,
                  f"you said it is {'still' if said else 'no longer'} throttled (held "
                  f"back for more than {THROTTLED_SHARE:.0%} of a run): compare echo-1's "
                  "cpu_throttled_s in lab.limits('echo') before and after one")
    return found


EXERCISES = (
    Exercise(
        "18.1", f"a {TIGHT_LIMIT_MB}M limit: how much headroom does echo-1 have?",
        "A few MiB: an idle instance already holds about 60 MiB. The leak crosses the limit "
        "in a fraction of a second, and so would a healthy instance at a busy moment (bigger "
        "buffers, more requests in flight): killed, restarted, killed again, a crash loop "
        "that looks like a bug in the code. Set a limit from the peak you measured, with room.",
        tight_limit, ("headroom_mb",)),
    Exercise(
        "18.2", "retries off: which share of requests fails at the restart?",
        "A few requests, around 1%: those echo-1 had in flight when the kernel killed it, and "
        "those the gateway sent it before its health check and the registry took it out. "
        "With retries (notebook 05) the gateway sends them again to a neighbour, and almost "
        "none fail: a limit and retries are designed to work together.",
        restart_without_retries, ("failed",)),
    Exercise(
        "18.3", "a 1.0-core CPU limit: is echo-1 still throttled, and why does p2c still "
                "avoid it?",
        "Rarely or not at all: the hog wants one core and the quota allows one, so the kernel "
        "seldom has to hold it back. p2c still gives echo-1 less traffic because its requests "
        "are slow anyway: the handler shares the process, and Python's GIL, with the busy "
        "thread, so requests stay in flight longer there, and p2c picks the less busy of two. "
        "A limit protects the machine; it does not make the hog's own requests fast.",
        hog_at_a_whole_core, ("throttled",)),
)
