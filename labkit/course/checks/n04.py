"""Notebook 04's exercises: gRPC load balancing and discovery."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import grpc

from ...demos.routeguide import call_log
from ...gateway import HEALTH_CHECK_INTERVAL, HEALTH_CHECK_TIMEOUT
from ..exercises import Exercise, Findings, number, share
from .measure import close_to, eventually, faulted_instances, registered

if TYPE_CHECKING:
    from ...lab import Lab

CALLS = 30
PAUSED = 2  # the instance the health-check check pauses
GATEWAY_TIMEOUT = 10.0  # s: far beyond a health check and a lease, so a miss is a finding


def static_channel(lab: Lab, new_share: object) -> Findings:
    said = share(new_share, "new_share")
    found = Findings()
    instances = lab.instances("routeguide").set_index("instance")["address"]
    if not found.require(len(instances) >= 3,
                         f"routeguide runs {len(instances)} instances: lab.scale('routeguide', 3)"
                         " after building your channel"):
        return found
    if not found.require({"routeguide-1", "routeguide-2"} <= set(instances.index),
                         "routeguide-1 and routeguide-2 should run (the channel's two "
                         "addresses): lab.heal()"):
        return found
    # the exercise's plain channel: round robin over the two addresses it was built with
    first_two = [instances[f"routeguide-{slot}"] for slot in (1, 2)]
    config: dict[str, object] = {"loadBalancingConfig": [{"round_robin": {}}]}
    with grpc.insecure_channel("ipv4:" + ",".join(first_two),
                               options=[("grpc.service_config", json.dumps(config))]) as channel:
        log = call_log(channel, CALLS)
    newer = float((~log["instance"].isin(["routeguide-1", "routeguide-2"])).mean())
    found.seen.append(f"a round-robin channel over {', '.join(first_two)} sent "
                      f"{newer:.0%} of {CALLS} calls to the {len(instances) - 2} newer "
                      "instance(s): " + ", ".join(
                          f"{name} {count}" for name, count in
                          log["instance"].value_counts().sort_index().items()))
    found.require(close_to(said, newer, 0.05),
                  f"you said the new instance gets {said:.0%} of the calls: count them with "
                  f"call_log(channel, {CALLS})")
    return found


def gateway_up(lab: Lab, instance: str) -> bool:
    """Whether Traefik routes to the instance (its health check and the registry agree)."""
    view = lab.discovery("routeguide")
    return bool(((view["instance"] == instance) & (view["gateway"] == "UP")).any())


def health_check_delay(lab: Lab, seconds: object) -> Findings:
    said = number(seconds, "seconds", 0, 60, "the seconds until Traefik stops routing to a "
                                             "paused instance")
    found = Findings()
    faults = faulted_instances(lab, "routeguide")
    found.require(not faults, f"faults in force on routeguide ({'; '.join(faults)}): "
                              "lab.heal() first")
    name = f"routeguide-{PAUSED}"
    found.require(name in registered(lab, "routeguide") and gateway_up(lab, name),
                  f"{name} should be registered and routed: lab.heal()")
    if found.missing:
        return found
    lab.pause("routeguide", PAUSED)
    paused_at = time.monotonic()
    try:
        taken_out = eventually(lambda: not gateway_up(lab, name), timeout=GATEWAY_TIMEOUT,
                               what=f"Traefik to stop routing to {name}")
        delay = time.monotonic() - paused_at
    finally:
        lab.resume("routeguide", PAUSED)
    found.require(eventually(lambda: gateway_up(lab, name), timeout=GATEWAY_TIMEOUT,
                             what=f"Traefik to route to {name} again"),
                  f"{name} is not routed again {GATEWAY_TIMEOUT:g} s after its resume: "
                  "lab.heal()")
    if not found.require(taken_out, f"Traefik still routed to the paused {name} after "
                                    f"{GATEWAY_TIMEOUT:g} s: are its health checks off?"):
        return found
    found.seen.append(f"paused {name}: Traefik stopped routing to it after {delay:.1f} s "
                      f"(health check every {HEALTH_CHECK_INTERVAL}, timeout "
                      f"{HEALTH_CHECK_TIMEOUT})")
    found.require(close_to(said, delay, 0.5, 0.5),
                  f"you said {said:g} s: pause an instance, then poll lab.discovery('routeguide')"
                  " until its gateway column is no longer UP")
    return found


EXERCISES = (
    Exercise(
        "04.1", "a bidirectional stream through the gateway: how is it balanced?",
        "As one call: Traefik picks an instance when the stream opens, and every message of "
        "that stream goes to it until the stream ends. A long-lived stream pins a client to "
        "one instance: new instances get no share of it, and draining one means ending its "
        "streams. Keep streams bounded (reconnect periodically, or set a max connection age "
        "on the server) so that balancing gets a chance."),
    Exercise(
        "04.2", "a plain round-robin channel over two addresses, then scale to 3: the new "
        "instance's share?",
        "None: a channel built from a fixed list of addresses never learns of the new "
        "instance, so the two old ones keep splitting every call. That is what "
        "lab.grpc_channel's registry watch (or a gRPC name resolver such as xDS or DNS with "
        "re-resolution) adds: discovery is the channel's job, not round robin's.",
        static_channel, ("new_share",)),
    Exercise(
        "04.3", "pause a routeguide instance: how long until Traefik stops routing to it?",
        f"About a second: Traefik calls the gRPC health service every {HEALTH_CHECK_INTERVAL} "
        f"and gives up after {HEALTH_CHECK_TIMEOUT}, so a paused (alive, silent) instance is "
        "marked down within interval + timeout; the registry's lease (2 s) would remove it "
        "a little later. Calls sent to it in between wait on it: that window is what a "
        "shorter interval or a client deadline bounds.",
        health_check_delay, ("seconds",)),
)
