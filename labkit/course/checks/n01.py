"""Notebook 01's exercises: load balancing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import psutil

from ...topology import service
from ..exercises import Exercise, Findings, choice, share
from .measure import ECHO_URL, close_to

if TYPE_CHECKING:
    from ...lab import Lab

BUSY_RPS = 200  # enough to make the busiest process stand out, little enough for 2 cores
COMPONENTS = ("traefik", "echo")
STALE = 5  # the notebook scaled echo to 5 before the client's list went stale
SCALED_IN = 2


def cpu_seconds(processes: dict[str, psutil.Process]) -> dict[str, float]:
    """User plus system CPU time each process has used so far, as `top` counts it."""
    return {name: sum(p.cpu_times()[:2]) for name, p in processes.items()}


def busiest_process(lab: Lab, busiest: object) -> Findings:
    busiest = choice(busiest, "busiest", COMPONENTS)
    found = Findings()
    status = lab.status()
    running = status[(status["component"] == "traefik") | (status["kind"] == "echo")]
    processes = {r.component: psutil.Process(int(r.pid)) for r in running.itertuples()
                 if r.pid}
    before, started = cpu_seconds(processes), time.monotonic()
    frame = lab.load(ECHO_URL, rps=BUSY_RPS, seconds=2)
    elapsed = time.monotonic() - started
    used = {name: (spent - before[name]) / elapsed
            for name, spent in cpu_seconds(processes).items()}
    top = max(used, key=used.__getitem__)
    found.seen.append(f"under {BUSY_RPS} rps (p99 {frame['latency_ms'].quantile(0.99):.0f} ms), "
                      "CPU in cores: " + ", ".join(f"{name} {cores:.2f}"
                                                  for name, cores in sorted(used.items())))
    found.require(top.split("-")[0] == busiest,
                  f"you said {busiest!r}: run top (or compare lab.status()'s pids in top) "
                  "while the load runs, and look at the busiest lab process")
    return found


def stale_client(lab: Lab, failed: object) -> Findings:
    said = share(failed, "failed")
    found = Findings()
    registered = len(lab.instances("echo"))
    if not found.require(registered == SCALED_IN,
                         f"echo has {registered} instances registered: keep the address list "
                         f"read with {STALE} instances, then lab.scale('echo', {SCALED_IN})"):
        return found
    # the stale list: the addresses the client read while STALE instances ran
    echo = service("echo")
    refused = 0
    with httpx.Client(timeout=1.0) as client:
        for slot in range(1, STALE + 1):
            try:
                client.get(f"http://{echo.endpoint(slot).address}/")
            except httpx.TransportError:
                refused += 1
    measured = refused / STALE
    found.seen.append(f"of the {STALE} addresses read before scaling in, {refused} refuse "
                      f"connections now: a round robin over them fails {measured:.0%} of calls")
    found.require(close_to(said, measured, 0.05),
                  f"you said {said:.0%} fail: call client_side_round_robin's loop with the old "
                  "list and count the connection errors")
    return found


EXERCISES = (
    Exercise(
        "01.1", "raise the rate until latency climbs: which process burns the most CPU?",
        "The gateway: Traefik handles every request (parse, route, proxy, log), while each "
        "echo instance handles only its share. It saturates first, and scaling echo out "
        "does not help it; that is why gateways are scaled too (several replicas behind a "
        "virtual IP or DNS), and why a cheap gateway matters.",
        busiest_process, ("busiest",)),
    Exercise(
        "01.2", f"a client-side list read with {STALE} instances, echo scaled to {SCALED_IN}: "
        "which share of calls fails?",
        f"{(STALE - SCALED_IN) / STALE:.0%}: the list still holds the {STALE - SCALED_IN} "
        "stopped instances, and the rotation keeps calling them (connection refused). To fix "
        "it the client would need to watch the registry (or re-read it), drop instances that "
        "refuse, and retry elsewhere: discovery, health and retries in every client, which the "
        "gateway does once for all of them.",
        stale_client, ("failed",)),
    Exercise(
        "01.3", "p2c: the shares with five equal instances, then with one slow one?",
        "With five equal instances, about 20% each, though less evenly than round robin: p2c "
        "picks two instances at random and sends the request to the one with fewer requests "
        "in flight. A slow instance keeps requests in flight longer, so it loses most "
        "comparisons and gets much less than 20%; round robin would still give it 20% and "
        "make those requests wait. Notebook 08 measures both."),
)
