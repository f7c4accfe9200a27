"""Notebook 13's exercises: rolling upgrades."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import pandas as pd

from ..exercises import Exercise, Findings, number, said_text
from .measure import ECHO_URL, error_share

if TYPE_CHECKING:
    from ...lab import Lab

FLEET = 4  # the notebook's replicas
BATCH = 2
RPS = 100  # the notebook's rps
# labkit.servicelock's refusal, with the holder it names (a rollout of echo, in progress)
BUSY_WITH_ROLLOUT = re.compile(
    r"refused: echo is busy with rollout to (?P<version>\S+) \(in progress, started \d+ s "
    r"ago by pid (?P<pid>\d+) on (?P<host>\S+)\), so rollout to \S+ cannot run now")


def fewest_registered(before: int, events: pd.DataFrame) -> int:
    """The fewest instances registered at once, replaying the watch's ups and downs from
    `before` (registered when the watch started)."""
    steps = events["event"].map({"up": 1, "down": -1})
    return int(min(before, before + steps.cumsum().min())) if len(steps) else before


def capacity_without_surge(lab: Lab, serving: object) -> Findings:
    said = number(serving, "serving", 0, FLEET,
                  f"the fewest echo instances serving during a round, of {FLEET}")
    found = Findings()
    fleet = lab.instances("echo")
    if not found.require(len(fleet) == FLEET,
                         f"echo runs {len(fleet)} instances: lab.scale('echo', {FLEET}) first, "
                         "as the notebook does"):
        return found
    # roll to the version the fleet does not run, so that every instance is replaced
    target = "v2" if set(fleet["version"]) == {"v1"} else "v1"
    with lab.registry.watch("echo") as watch:
        traffic = lab.start_load(ECHO_URL, rps=RPS, seconds=7)
        time.sleep(1)  # the watch's stream opens meanwhile, and the load has a baseline
        report = lab.rollout("echo", version=target, batch=BATCH, surge=0)
    frame = traffic.result()
    fewest = fewest_registered(FLEET, watch.events())
    found.seen.append(f"the check rolled echo to {target} with batch={BATCH}, surge=0 in "
                      f"{len(report)} rounds: as few as {fewest} of {FLEET} instances were "
                      f"registered; under {RPS} rps, p99 {frame['latency_ms'].quantile(0.99):.0f}"
                      f" ms, {error_share(frame):.1%} of {len(frame)} requests failed")
    found.require(said == fewest,
                  f"you said {said:g} instances serve at the least: without surge, a round "
                  "drains its whole batch before any new instance starts. Run it with "
                  "lab.registry.watch('echo') and count")
    return found


def second_rollout(lab: Lab, refusal: object) -> Findings:
    said = said_text(refusal, "refusal", "what the second lab.rollout('echo', ...) raised")
    found = Findings()
    busy = BUSY_WITH_ROLLOUT.match(said)
    if busy:
        found.seen.append(f"refused while pid {busy['pid']} on {busy['host']} rolled echo out "
                          f"to {busy['version']}")
    found.require(busy is not None,
                  "that is not the refusal of a rollout of echo while another one runs: start "
                  "one (from another notebook, or a thread), then a second while it runs")
    return found


EXERCISES = (
    Exercise(
        "13.1", f"batch={BATCH}, surge=0 on {FLEET} instances: how many serve during a round?",
        f"{FLEET - BATCH}: without surge, each round first drains its batch (deregister, finish, "
        "exit) and only then starts the new instances, so for the second or two they take to "
        "be routed, half the fleet carries all the traffic. Nothing fails if the rest has the "
        "headroom, but latency (p99) rises with the load per instance; surge buys that "
        "capacity back with extra instances for the length of a round.",
        capacity_without_surge, ("serving",)),
    Exercise(
        "13.2", "no drain (LAB_DRAIN_SECONDS=0) at 500 rps: do requests fail?",
        "Some can: deregistering removes the instance from etcd at once, but the gateway "
        "learns it a moment later (its watch of the registry, then a new configuration), and "
        "requests already sent to the instance are still in flight. An instance that exits "
        "without draining refuses or resets those, and the gateway cannot always retry a "
        "request a server had received. The drain covers the propagation delay plus the "
        "longest request; at 500 rps there are many more requests in that window. (This one "
        "needs editing the instances' environment and restarting the stack: it stays a "
        "thought experiment here.)"),
    Exercise(
        "13.3", "two rollouts of echo at once: what does the second say?",
        "It is refused at once: 'refused: echo is busy with rollout to v2 (in progress, "
        "started N s ago by pid P on H), so rollout to v2 cannot run now; wait until it ends'. "
        "One operation at a time per service (scale, "
        "heal and deployments): each takes the service's lock first (labkit.servicelock), so "
        "two rollouts cannot each decide which instances are old and stop the other's new "
        "ones. The message names the holder, so you know whom to wait for.",
        second_rollout, ("refusal",)),
)
