"""Notebook 14's exercises: blocking clients."""

from __future__ import annotations

from concurrent.futures import wait
from typing import TYPE_CHECKING

import pandas as pd

from ...errors import LabError
from ..exercises import Exercise, Findings, number
from .measure import ECHO_URL, policy_settings

if TYPE_CHECKING:
    from ...lab import Lab

# the notebook's clients and rates
ABUSER = "127.0.0.66"
REGULARS = ("127.0.0.21", "127.0.0.22", "127.0.0.23")
FLOOD_RPS, REGULAR_RPS = 80, 5
LOW_MAX_RPS = 2
# The guard sees the access log 2-3 s late, so its window holds (window - delay) s of a
# client's requests: a 10 s window keeps 5 rps clients above 2 rps with a delay up to 6 s
LOW_WINDOW = "10s"
SECONDS = 10
DENIED_NETWORK = "127.0.0.16/28"


def gate_clients(lab: Lab, gate: str) -> list[str]:
    """The clients on echo's deny or allow list ("127.0.0.21/32", ...): its one setting,
    "clients=a, b", may end with how long the list has left ("expires in 5 s")."""
    listed = (policy_settings(lab, "echo", gate) or {}).get("clients", "")
    return [item for item in listed.split(", ") if item and not item.startswith("expire")]


def statuses(lab: Lab, clients: tuple[str, ...], rps: int,
             seconds: float) -> dict[str, pd.Series]:
    """Each client's statuses, from the clients' loads sent side by side."""
    runs = [lab.start_load(ECHO_URL, rps=rps, seconds=seconds, source_address=client)
            for client in clients]
    wait(runs)
    return {client: run.result()["status"] for client, run in zip(clients, runs, strict=True)}


def low_threshold(lab: Lab, banned: object) -> Findings:
    said = number(banned, "banned", 0, len(REGULARS) + 1, "how many of the notebook's "
                  "clients a guard with max_rps=4 bans")
    found = Findings()
    try:
        guard = lab.guard("echo", max_rps=LOW_MAX_RPS, window=LOW_WINDOW, ban="6s")
    except LabError as busy:
        found.require(False, f"{busy}: the check runs a guard of its own")
        return found
    try:
        loads = [lab.start_load(ECHO_URL, rps=REGULAR_RPS, seconds=SECONDS, source_address=c)
                 for c in REGULARS]
        loads.append(lab.start_load(ECHO_URL, rps=FLOOD_RPS, seconds=SECONDS,
                                    source_address=ABUSER))
        wait(loads)
        decisions = guard.decisions
    finally:
        guard.stop()  # lifts its bans
    banned_now = set(decisions.loc[decisions["action"] == "ban", "client"])
    out = banned_now & {*REGULARS, ABUSER}
    # the guard's first window reaches back before it started: earlier traffic counts too
    others = sorted(banned_now - out)
    also = f" (and {', '.join(others)}, for traffic sent just before)" if others else ""
    found.seen.append(f"the check's guard (max_rps={LOW_MAX_RPS}, window {LOW_WINDOW}) watched "
                      f"{len(REGULARS)} clients at {REGULAR_RPS} rps and one at {FLOOD_RPS} "
                      f"rps for {SECONDS} s and banned {len(out)} of them{also}")
    found.require(said == len(out),
                  f"you said {said:g} of the {len(REGULARS) + 1} clients are banned: compare "
                  f"each client's rate in the notebook's traffic with the threshold of "
                  f"{LOW_MAX_RPS} rps")
    return found


def denied_network(lab: Lab, out: object) -> Findings:
    said = number(out, "out", 0, len(REGULARS), "how many of the regular clients are refused")
    found = Findings()
    clients = gate_clients(lab, "ip-deny")
    if not found.require(DENIED_NETWORK in clients,
                         f"echo's deny list is {', '.join(clients) or 'empty'}: "
                         f"lab.policies.deny('echo', "
                         f"'{DENIED_NETWORK}')"):
        return found
    answered = statuses(lab, REGULARS, rps=10, seconds=1)
    refused = [c for c, s in answered.items() if (s == 403).all()]
    found.seen.append(f"with {DENIED_NETWORK} denied, {len(refused)} of the {len(REGULARS)} "
                      "regular clients got only 403s")
    found.require(said == len(refused),
                  f"you said {said:g} of the {len(REGULARS)} regular clients are out: work out "
                  f"the addresses {DENIED_NETWORK} covers (a /28 is 16 addresses), or send "
                  "each one a load")
    return found


def allow_list(lab: Lab, status: object) -> Findings:
    said = number(status, "status", 100, 599, "an HTTP status code")
    found = Findings()
    listed = {client.removesuffix("/32") for client in gate_clients(lab, "ip-allow")}
    if not found.require(listed == set(REGULARS),
                         f"echo's allow list is {', '.join(sorted(listed)) or 'not set'}: it "
                         "should list the regular clients only, "
                         "lab.policies.allow('echo', regulars)"):
        return found
    answered = statuses(lab, (*REGULARS, ABUSER), rps=10, seconds=1)
    served = min(float((answered[c] == 200).mean()) for c in REGULARS)
    outsider = answered[ABUSER].value_counts().to_dict()
    found.seen.append(f"the regular clients were served {served:.0%} at the least; "
                      f"{ABUSER}, not on the list, got {outsider}")
    found.require(served == 1, f"a regular client got {1 - served:.0%} refused: "
                               "check its address on the allow list")
    found.require(answered[ABUSER].eq(said).all(),
                  f"you said {said:g}: send a load from a client not on the list "
                  f"(source_address='{ABUSER}') and read its statuses")
    return found


EXERCISES = (
    Exercise(
        "14.1", f"a guard with max_rps={LOW_MAX_RPS}, window={LOW_WINDOW}: who is banned?",
        "Every client: the three regular ones send 5 requests a second, above 2, so the "
        "guard bans them with the flood. (The guard reads the access log 2-3 s late, so it "
        "sees fewer requests than were sent: just above the threshold, as 5 rps against 4 "
        "over 3 s, a client can slip under it.) The mechanism is the same at 2 or 20 rps; what a "
        "'normal' client sends (a browser's bursts, a batch job, many users behind one NAT) "
        "is a decision about the service's users, to be made from their measured traffic "
        "and revisited, not a property of the gateway.",
        low_threshold, ("banned",)),
    Exercise(
        "14.2", f"deny {DENIED_NETWORK}: which regular clients are out?",
        "All three: 127.0.0.16/28 is the 16 addresses 127.0.0.16 to 127.0.0.31, and the "
        "regular clients are 127.0.0.21-23 (the abuser, 127.0.0.66, is still served). A "
        "network rule blocks a whole range in one line, and everyone in it, guilty or not.",
        denied_network, ("out",)),
    Exercise(
        "14.3", "an allow list of the regular clients: what does anyone else get?",
        "403 Forbidden, from the gateway, before any instance sees the request. An allow "
        "list suits a service with a known, small set of callers (an internal API, an admin "
        "endpoint, a partner's servers): deny by default, and a new caller is let in on "
        "purpose. It does not suit a public service, whose clients you cannot list.",
        allow_list, ("status",)),
)
