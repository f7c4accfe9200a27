"""What the checks read and measure, with the learner's own APIs (no hidden channel)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import pandas as pd

from ...errors import LabError, LabTimeout
from ...waits import wait_for

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
    pairs = (item.split("=", 1) for item in rows.iloc[0]["settings"].split(", "))
    return {key: value for key, value in pairs}


def faulted_instances(lab: Lab, service: str) -> list[str]:
    """The service's instances with a fault in force ("echo-2: latency 1000 ms", ...)."""
    faults = lab.faults()
    rows = faults[faults["service"] == service]
    return [f"{r.instance}: {r.fault} {r.detail}".strip() for r in rows.itertuples()]


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


def choice(value: object, name: str, options: Collection[str]) -> str:
    """A learner's answer among named options ("echo", ...), or an error naming them."""
    if value not in options:
        raise LabError(f"{name} is one of {', '.join(map(repr, sorted(options)))}; got {value!r}")
    return str(value)
