"""Block abusive clients from the gateway's own access log: fail2ban's idea on the lab's
telemetry.

Every `interval` the guard reads the access log of a service's route from the telemetry store
(Traefik exports it there; that export's delay is part of the reaction) and counts each
client's requests in the last `window` seconds. A client above `max_rps` on average over the
window is denied at the gateway (lab.policies.deny) for `ban` seconds, then let in again; it
is banned again only for requests sent after its ban ended. The deny's etcd lease runs to the
end of the longest ban, so the bans lift even if the guard's process dies. The pure part
(`offenders`) and the loop (`run`, with its clock, reader and deny passed in) are shaped like
labkit.autoscale, so a unit test runs a whole scenario.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from . import durations
from .control_loop import ControlLoop, Record
from .errors import LabError

DECISION_COLUMNS = ["time", "client", "requests", "rps", "action", "until"]
MAX_WINDOW_S = 600


@dataclass(frozen=True)
class Rule:
    max_rps: float  # per client, averaged over the window
    window_s: float
    ban_s: float
    interval_s: float


def check_rule(max_rps: object, window: object, ban: object, interval: object) -> Rule:
    """Everything checked before the guard starts, each error naming what is valid."""
    if (isinstance(max_rps, bool) or not isinstance(max_rps, int | float)
            or not 0 < max_rps <= 100_000):
        raise LabError(f"max_rps must be a number of requests per second above 0 (and at most "
                       f"100000), got {max_rps!r}")
    window_s = durations.seconds(window, "window", positive=True, maximum=MAX_WINDOW_S)
    ban_s = durations.seconds(ban, "ban", positive=True, maximum=7 * 24 * 3600)
    interval_s = durations.seconds(interval, "interval", positive=True, maximum=60)
    if interval_s < 0.2:
        raise LabError(f"interval must be at least 0.2 s (each check queries the telemetry "
                       f"store), got {interval!r}")
    return Rule(float(max_rps), window_s, ban_s, interval_s)


def offenders(access: pd.DataFrame, host: str, since: dict[str, float], now: float,
              rule: Rule) -> dict[str, int]:
    """Clients whose requests to `host` in the window before `now` (and after their own
    `since`, the end of an earlier ban) exceed the rule, with their request counts."""
    if access.empty:
        return {}
    sent = access["time"].map(pd.Timestamp.timestamp)
    recent = access[(access["host"] == host) & (sent >= now - rule.window_s)]
    recent = recent[sent[recent.index] >= recent["client"].map(since).fillna(0)]
    counts = recent.groupby("client").size()
    return {str(c): int(n) for c, n in counts.items() if n > rule.max_rps * rule.window_s}


def run(rule: Rule, host: str, read_access: Callable[[float], pd.DataFrame],
        deny: Callable[[dict[str, float]], None], stop: threading.Event,
        record: Callable[[dict], None], clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep) -> None:
    """Every interval until `stop`: read the access log since the window began, ban the new
    offenders, lift the bans that ended; `deny` gets every ban in force (client -> until)
    whenever that changes, and {} at the end; `record` gets each ban and lift."""
    bans: dict[str, float] = {}  # client -> when its ban ends
    ended: dict[str, float] = {}  # client -> when its last ban ended
    try:
        while not stop.is_set():
            now = clock()
            changed = False
            for client in [c for c, until in bans.items() if until <= now]:
                ended[client] = bans.pop(client)
                record({"time": now, "client": client, "requests": None, "rps": None,
                        "action": "lift", "until": None})
                changed = True
            found = offenders(read_access(now - rule.window_s), host, ended, now, rule)
            for client, count in found.items():
                if client in bans:
                    continue
                bans[client] = now + rule.ban_s
                record({"time": now, "client": client, "requests": count,
                        "rps": count / rule.window_s, "action": "ban", "until": bans[client]})
                changed = True
            if changed:
                deny(dict(bans))
            sleep(max(0.0, now + rule.interval_s - clock()))
    finally:
        if bans:
            deny({})


class Guard(ControlLoop):
    """A running guard for one service (lab.guard): .decisions has one row per ban and per
    lift (when, who, the requests seen in the window); stop() ends it and lifts its bans."""

    def __init__(self, service: str, host: str, rule: Rule,
                 read_access: Callable[[float], pd.DataFrame],
                 deny: Callable[[dict[str, float]], None], progress: Callable[[str], None]):
        self.service, self.rule = service, rule

        def body(stop: threading.Event, record: Record) -> None:
            run(rule, host, read_access, deny, stop, record, sleep=stop.wait)

        def announce(row: dict) -> str:
            rate = (f" ({row['rps']:.0f} rps over {rule.window_s:g} s)"
                    if row["action"] == "ban" else "")
            return f"guard {service}: {row['action']} {row['client']}{rate}"

        super().__init__(f"guard-{service}", DECISION_COLUMNS, rule.interval_s, body, announce,
                         progress)


def lease_seconds(bans: dict[str, float], now: float) -> float:
    """The deny's lease: to the end of the longest ban (at least one second)."""
    return max(1.0, math.ceil(max(bans.values()) - now))
