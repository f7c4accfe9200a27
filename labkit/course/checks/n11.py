"""Notebook 11's exercises: centralized logging."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import pandas as pd

from ... import log_analysis
from ...errors import LabError, LabTimeout
from ...waits import wait_for
from ..exercises import Exercise, Findings, choice, number
from .measure import ECHO_URL, faulted_instances

if TYPE_CHECKING:
    from ...lab import Lab

SPLIT = 3  # the flood comes from this many addresses
# the notebook's clients: its regulars, and its flood (from its abuser and two neighbours)
REGULARS = ("127.0.0.21", "127.0.0.22", "127.0.0.23")
REGULAR_RPS = 5
FLOODERS = ("127.0.0.66", "127.0.0.67", "127.0.0.68")
FLOOD_RPS = 120
FLOOD_S = 5.0
DOWNSTREAM_FAILED = "downstream call failed"
SERVICES = ("traefik", "web", "echo", "routeguide")
LEVELS = ("debug", "info", "warning", "error")


def split_flood(lab: Lab, found: object) -> Findings:
    said = number(found, "found", 0, SPLIT, "how many of the flood's addresses are flagged")
    findings = Findings()
    # the check floods itself, as the exercise asks, and reads only its own records: the
    # access log of the last minute also holds whatever else loaded echo meanwhile
    since = time.time()
    runs = [lab.start_load(ECHO_URL, rps=REGULAR_RPS, seconds=FLOOD_S, source_address=address)
            for address in REGULARS]
    runs += [lab.start_load(ECHO_URL, rps=FLOOD_RPS / SPLIT, seconds=FLOOD_S,
                            source_address=address) for address in FLOODERS]
    sent = sum(len(run.result()) for run in runs)

    def access_records() -> pd.DataFrame | None:
        access = log_analysis.access_log(lab.logs(service="traefik", since=since, limit=100_000))
        access = access[access["client"].isin((*REGULARS, *FLOODERS))]
        return access if len(access) >= sent else None

    access = cast(pd.DataFrame, wait_for(
        access_records, what=f"the access log of the check's {sent} requests", timeout=15,
        interval=0.5))
    flagged = set(log_analysis.abusive_clients(access)["client"]) & set(FLOODERS)
    typical = log_analysis.top_clients(access, n=len(access))["requests"].median()
    findings.seen.append(
        f"a {FLOOD_RPS} rps flood split over {', '.join(FLOODERS)} beside {len(REGULARS)} "
        f"regular clients at {REGULAR_RPS} rps ({FLOOD_S:g} s; the median client sent "
        f"{typical:.0f} requests): abusive_clients flags {len(flagged)} of the flood's addresses")
    findings.require(said == len(flagged),
                     f"you said abusive_clients finds {said:.0f}; run the notebook's clients with "
                     f"the flood split over {SPLIT} addresses, then log_analysis.abusive_clients "
                     "on their access log, and count")
    return findings


def names(value: object, name: str, options: Iterable[str]) -> set[str]:
    """A learner's set of names among `options` (a list, set or tuple of them)."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise LabError(f"{name} is a list of names among {', '.join(options)}; got {value!r}")
    return {choice(item, name, list(options)) for item in value}


def downstream_failures(lab: Lab, services: object, level: object) -> Findings:
    said_services = names(services, "services", SERVICES)
    said_level = choice(level.lower() if isinstance(level, str) else level, "level", LEVELS)
    found = Findings()
    failing = {f.split(":")[0] for f in faulted_instances(lab, "echo") if ": error_rate" in f}
    instances = set(lab.instances("echo")["instance"])
    if not found.require(failing == instances,
                         f"echo instances failing: {', '.join(sorted(failing)) or 'none'} of "
                         f"{len(instances)}: fault every one with error_rate=1.0"):
        return found
    since = time.time()
    lab.load("http://web.localhost/", rps=5, seconds=1)

    def logged() -> pd.DataFrame:
        return lab.logs(since=since, contains=DOWNSTREAM_FAILED)

    try:
        records = wait_for(logged, what=f"records of {DOWNSTREAM_FAILED!r}", timeout=15,
                           interval=0.5)
    except LabTimeout as error:
        found.missing.append(f"no {DOWNSTREAM_FAILED!r} record after 5 requests to web: {error}")
        return found
    logging = set(records["service"])
    levels = set(records["level"].str.lower())
    found.seen.append(f"5 requests to web with echo failing: {len(records)} records of "
                      f"{DOWNSTREAM_FAILED!r} from {', '.join(sorted(logging))} at "
                      f"{', '.join(sorted(levels))}")
    found.require(said_services == logging,
                  f"you said {', '.join(sorted(said_services))} log it: read the service "
                  f"column of lab.logs(contains={DOWNSTREAM_FAILED!r})")
    found.require(levels == {said_level},
                  f"you said {said_level}: read the level column of the same records")
    return found


EXERCISES = (
    Exercise(
        "11.1", "logs and metrics disagree on an error ratio: two reasons?",
        "They count different things at different times. The logs hold what was logged: "
        "sampled or dropped records, a failure logged by several hops (or none, when a "
        "connection fails before any service sees it), and records that arrive in batches "
        "seconds late. The metrics are rates over a window (10 s here), scraped every 2 s: "
        "they lag, smooth and extrapolate, and a restarted instance resets its counters. "
        "Compare them over the same closed interval, once the logs have arrived."),
    Exercise(
        "11.2", f"the flood from {SPLIT} addresses: how many does abusive_clients find?",
        "None, or fewer than three: abusive_clients compares each client with the median "
        "client. With three flooders among six clients the median is half a flooder, so no "
        "one stands out five times above it, while the service gets the same flood. "
        "Per-address limits and median-based detection are both evaded by spreading a flood "
        "over addresses: limit per identity (a token or API key) and watch the total too.",
        split_flood, ("found",)),
    Exercise(
        "11.3", f"every echo instance fails: who logs {DOWNSTREAM_FAILED!r}, at which level?",
        "web alone, at warning: echo's own records say that it failed (at warning too), web's "
        "say that a call it depends on failed, and Traefik's access log has the 502 web "
        "returned. Each service logs its own view, with the request id that joins them.",
        downstream_failures, ("services", "level")),
)
