"""Notebook 02's exercises: service discovery and registration."""

from __future__ import annotations

import contextlib
import json
import time
from typing import TYPE_CHECKING

from ...errors import LabError
from ...topology import LEASE_TTL_SECONDS
from ..exercises import Exercise, Findings, number
from .measure import ECHO_URL, error_share, eventually, faulted_instances, registered

if TYPE_CHECKING:
    from ...lab import Lab

RENEWAL = LEASE_TTL_SECONDS / 3  # each instance renews its lease every TTL/3
SHORTEST = LEASE_TTL_SECONDS - RENEWAL  # a crash just before a renewal: the lease is that old
ANSWER_TOLERANCE = 0.3  # seconds: etcd expires leases on its own ticks, a bit after the TTL
CRASHED = 3
LEASE_MARGIN = 1.5  # the notebook's lease_margin: etcd's expiry on a busy machine
PAUSED = 1
SCALED_IN = "echo-4"  # the instance the notebook's scale-in stops


def crash_window(lab: Lab, shortest: object, longest: object) -> Findings:
    low = number(shortest, "shortest", 0, 10, "the shortest delay in seconds")
    high = number(longest, "longest", 0, 10, "the longest delay in seconds")
    found = Findings()
    found.require(abs(low - SHORTEST) <= ANSWER_TOLERANCE,
                  f"you said the shortest delay is {low:g} s: a crash just before a renewal "
                  "leaves the lease as old as it gets; how long has it left then?")
    found.require(abs(high - LEASE_TTL_SECONDS) <= ANSWER_TOLERANCE,
                  f"you said the longest delay is {high:g} s: a crash just after a renewal "
                  "leaves the lease all of its TTL")
    faults = faulted_instances(lab, "echo")
    listed = registered(lab, "echo")
    if not found.require(not faults and f"echo-{CRASHED}" in listed,
                         f"the check crashes echo-{CRASHED}; faults in force on echo "
                         f"({'; '.join(faults) or 'none'}), registered {sorted(listed)}: "
                         "lab.heal() first"):
        return found
    with lab.registry.watch("echo") as watch:
        crashed_at = time.time()
        lab.kill("echo", CRASHED, restart=False)
        eventually(lambda: f"echo-{CRASHED}" not in registered(lab, "echo"),
                   timeout=LEASE_TTL_SECONDS + LEASE_MARGIN,
                   what=f"the registry to drop the crashed echo-{CRASHED}")  # reported below
        downs = watch.events()
    lab.heal()  # restart echo-3: the check leaves the lab as it found it
    down = downs[(downs["instance"] == f"echo-{CRASHED}") & (downs["event"] == "down")]
    if not found.require(len(down) > 0, f"the registry did not drop echo-{CRASHED} within "
                                        f"{LEASE_TTL_SECONDS + LEASE_MARGIN:g} s of its "
                                        "crash: is etcd struggling? lab.status()"):
        return found
    delay = float(down["time"].iloc[0]) - crashed_at
    # etcd expires a lease on its own ticks: a little after the TTL still counts as inside
    inside = "inside" if low <= delay <= high + ANSWER_TOLERANCE else "outside"
    found.seen.append(f"echo-{CRASHED} crashed (SIGKILL): its down event came {delay:.2f} s "
                      f"later, {inside} your window of {low:g} to {high:g} s")
    return found


def paused_instance(lab: Lab) -> Findings:
    found = Findings()
    name = f"echo-{PAUSED}"
    faults = faulted_instances(lab, "echo")
    if not found.require(f"{name}: hang paused (SIGSTOP)" in faults,
                         f"{name} is not paused (faults in force: {'; '.join(faults) or 'none'})"
                         f": lab.pause('echo', {PAUSED})"):
        return found
    started = time.monotonic()
    left = eventually(lambda: name not in registered(lab, "echo"),
                      timeout=LEASE_TTL_SECONDS + LEASE_MARGIN,
                      what=f"the registry to drop the paused {name}")
    if not found.require(left, f"{name} is paused but still registered "
                               f"{LEASE_TTL_SECONDS + LEASE_MARGIN:g} s later"):
        return found
    found.seen.append(f"{name} is paused and no longer registered (the check waited "
                      f"{time.monotonic() - started:.1f} s for it)")
    frame = lab.load(ECHO_URL, rps=50, seconds=1)
    reached = int((frame["instance"] == name).sum())
    found.seen.append(f"through the gateway: {error_share(frame):.1%} of {len(frame)} "
                      f"requests failed, {reached} reached {name}")
    found.require(reached == 0 and error_share(frame) <= 0.01,
                  f"the gateway still sends requests to the paused {name}, or they fail: "
                  "wait a few seconds, then check again")
    return found


def shutdown_order(lab: Lab, lines: object) -> Findings:
    if (not isinstance(lines, list | tuple) or len(lines) < 2
            or not all(isinstance(line, str) for line in lines)):
        raise LabError(f"lines is a list of two or more lines of {SCALED_IN}'s log (each the "
                       f"whole line, or its msg); got {lines!r}")
    found = Findings()
    path = lab.backend.log_path(SCALED_IN)
    rows: list[tuple[int, str, str]] = []  # (index, line, msg) of every JSON line
    for index, raw in enumerate(path.read_text().splitlines() if path.exists() else []):
        with contextlib.suppress(ValueError):
            rows.append((index, raw.strip(), str(json.loads(raw).get("msg", ""))))
    stops = sum(msg == "shutdown: done" for _, _, msg in rows)
    found.seen.append(f"{path}: {len(rows)} lines, {stops} graceful stop(s)")
    if not found.require(stops > 0, f"{SCALED_IN} has not stopped yet: scale echo to 4, then "
                                    "back to 3 (the notebook's scale-in)"):
        return found
    picked = [next((r for r in rows if line.strip() in (r[1], r[2])), None) for line in lines]
    unknown = [line for line, row in zip(lines, picked, strict=True) if row is None]
    if not found.require(not unknown, f"not lines of {SCALED_IN}'s log: {unknown}"):
        return found
    chosen = [row for row in picked if row is not None]
    # the lease is revoked by whichever thread gets there first: the shutdown ("deregistered")
    # or the registration loop, which sees the instance not ready ("withdrawn: ...")
    leaving = [n for n, _, msg in chosen if "deregister" in msg or msg.startswith("withdrawn")]
    stopping = [n for n, _, msg in chosen if "stopping server" in msg]
    found.require(bool(leaving), "none of your lines shows echo-4 leaving the registry")
    found.require(bool(stopping), "none of your lines shows its server stopping")
    if leaving and stopping:
        found.require(min(leaving) < max(stopping),
                      "in the log, your deregistration line comes after the server stopping")
    return found


EXERCISES = (
    Exercise(
        "02.1", "the shortest and longest time between a crash and its down event?",
        f"About {SHORTEST:g} s and {LEASE_TTL_SECONDS:g} s: the lease expires "
        f"{LEASE_TTL_SECONDS:g} s after its last renewal, and renewals come every "
        f"{RENEWAL:g} s, so a crash happens between 0 and {RENEWAL:g} s after one. etcd "
        "expires leases on its own ticks, so add a little. A shorter TTL narrows the window "
        "and costs more renewals.",
        crash_window, ("shortest", "longest")),
    Exercise(
        "02.2", f"pause echo-{PAUSED}: does it leave the registry, and what happens on resume?",
        "It leaves within the lease TTL: a stopped process renews nothing, so its lease "
        "expires as after a crash (and the gateway's health check drops it even sooner). On "
        "lab.resume its renewal thread runs again, finds its lease gone ('...; registering "
        "again' in its log), and registers under a new lease: it takes traffic again without "
        "a restart.",
        paused_instance),
    Exercise(
        "02.3", "in echo-4's log: which lines show deregistration before the server stopped?",
        "On SIGTERM the instance logs 'shutdown: not ready, deregistering', and its lease is "
        "revoked ('deregistered', or 'withdrawn: instance not ready' when the registration "
        "loop notices first), so the gateway drops it at once; only then come "
        "'shutdown: stopping server, letting in-flight requests finish' and 'shutdown: done'. "
        "Leaving the registry first is what makes a graceful stop cost no request.",
        shutdown_order, ("lines",)),
)
