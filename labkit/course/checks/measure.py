"""What the checks read and measure, with the learner's own APIs (no hidden channel)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import pandas as pd

from ...errors import LabTimeout
from ...waits import wait_for
from ..exercises import Findings

if TYPE_CHECKING:
    from ...lab import Lab

ECHO_URL = "http://echo.localhost/"


def policy_settings(lab: Lab, service: str, policy: str) -> dict[str, str] | None:
    """A policy's settings as lab.policies.policies() shows them ("attempts=3, ..."), or
    None when the service has no such policy."""
    table = lab.policies.policies(service)
    rows = table[table["policy"] == policy]
    if rows.empty:
        return None
    # split before each "key=": a breaker's expression holds ", " itself
    pairs = (item.split("=", 1) for item in re.split(r", (?=\w+=)", rows.iloc[0]["settings"]))
    return {key: value for key, value in pairs}


def faulted_instances(lab: Lab, service: str) -> list[str]:
    """The service's instances with a fault in force ("echo-2: latency 1000 ms", ...)."""
    faults = lab.faults()
    rows = faults[faults["service"] == service]
    return [f"{r.instance}: {r.fault} {r.detail}".strip() for r in rows.itertuples()]


def instances_with(lab: Lab, service: str, fault: str) -> set[str]:
    """The service's instances with one kind of fault in force ("latency", "error_rate")."""
    faults = lab.faults()
    return set(faults[(faults["service"] == service) & (faults["fault"] == fault)]["instance"])


def every_instance_with(found: Findings, lab: Lab, service: str, fault: str, how: str) -> bool:
    """Whether every instance of `service` has `fault` in force; if not, notes in `found`
    which have it and `how` to set it."""
    have = instances_with(lab, service, fault)
    return found.require(bool(have) and have == registered(lab, service),
                         f"every {service} instance should have {fault} in force, now "
                         f"{', '.join(sorted(have)) or 'none'} have: {how}")


def close_to(said: float, measured: float, absolute: float, relative: float = 0.0) -> bool:
    """Whether a learner's number agrees with the measured one, within the larger slack."""
    return abs(said - measured) <= max(absolute, relative * abs(measured))


def error_share(frame: pd.DataFrame) -> float:
    """The share of requests that did not succeed."""
    return float((frame["status"] != 200).mean()) if len(frame) else 0.0


def registered(lab: Lab, service: str) -> set[str]:
    """The service's instances the registry lists ("echo-1", ...)."""
    return set(lab.instances(service)["instance"])


def eventually(holds: Callable[[], bool], *, what: str, timeout: float) -> bool:
    """Whether `holds` comes true within `timeout` s: a bounded wait whose outcome a check
    reports as missing rather than raises."""
    try:
        wait_for(holds, what=what, timeout=timeout)
    except LabTimeout:
        return False
    return True

