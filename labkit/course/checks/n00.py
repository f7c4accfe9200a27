"""Notebook 00's exercises: a tour of the lab."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exercises import Exercise, Findings, number
from .measure import ECHO_URL, error_share, eventually, registered

if TYPE_CHECKING:
    from ...lab import Lab

SCALED_TO = 4  # the exercise's lab.scale("echo", 4)
ROUNDS = 5  # requests per instance the rotation check sends


def rotation(lab: Lab, instances: object) -> Findings:
    said = int(number(instances, "instances", 1, 10, "how many different instances answer"))
    found = Findings()
    listed = registered(lab, "echo")
    # one request at a time (20 a second, a few ms each), as curl sends them
    frame = lab.load(ECHO_URL, rps=20, seconds=ROUNDS * len(listed) / 20)
    answered = frame["instance"].value_counts()
    found.seen.append(f"{len(frame)} requests through the gateway, answered in the order "
                      f"{', '.join(frame['instance'])}; {len(listed)} echo instances are "
                      "registered")
    # fair shares, though not always a strict cycle (measured: 3, 1, 3, 1, 2, 1, 2, 3, ...)
    found.require(error_share(frame) == 0 and set(answered.index) == listed
                  and answered.max() <= 2 * ROUNDS,
                  f"the gateway did not share {len(frame)} requests over the {len(listed)} "
                  f"registered instances ({answered.to_dict()}): lab.heal() if an instance is "
                  "faulty, then check again")
    found.require(said == len(listed),
                  f"you said {said} different instances answer: send a few more requests and "
                  "count the distinct X-Instance values")
    return found


def dashboard_servers(lab: Lab, servers: object) -> Findings:
    said = int(number(servers, "servers", 1, 10, "the number of servers the dashboard lists"))
    found = Findings()
    listed = len(registered(lab, "echo"))
    if not found.require(listed == SCALED_TO,
                         f"echo has {listed} instances registered: "
                         f"lab.scale('echo', {SCALED_TO}), then reload the dashboard"):
        return found
    # Traefik follows the registry within milliseconds; a busy machine may take longer
    eventually(lambda: len(lab.gateway.servers("echo")) == listed, timeout=5,
               what="Traefik to route to every registered echo instance")
    routed = lab.gateway.servers("echo")
    found.seen.append(f"{listed} echo instances registered; Traefik routes to "
                      f"{len(routed)} servers, none restarted")
    found.require(said == len(routed),
                  f"you said the dashboard lists {said} servers: reload the echo service's "
                  "page (HTTP > Services > echo@etcd) and count its servers")
    return found


EXERCISES = (
    Exercise(
        "00.1", "requests through the gateway: how many different instances answer?",
        "Every registered instance (3 here), in turn: Traefik's weighted round robin hands "
        "each request to the next instance it routes to, so each answers about one request "
        "in three. The client sent every request to the same address; the gateway chose the "
        "instance.",
        rotation, ("instances",)),
    Exercise(
        "00.2", f"scale echo to {SCALED_TO}: how many servers does the dashboard list?",
        f"{SCALED_TO}: each new instance registered itself in etcd and published its URL; "
        "Traefik watches etcd and added it to the echo service with no restart and no file "
        "edited.",
        dashboard_servers, ("servers",)),
    Exercise(
        "00.3", "where does Traefik get its routes, if not from .lab/traefik.yml?",
        "From etcd: traefik.yml is Traefik's static configuration (entry points, the API and "
        "the etcd provider with its root key, traefik/). The routers, services and servers are "
        "keys under that root: labkit writes the routes once at start-up, and each instance "
        "writes its own server URL under its lease. Traefik watches the prefix and applies "
        "every change live."),
)
