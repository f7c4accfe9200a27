"""Small helpers shared by the live-stack tests."""

import time
from collections.abc import Callable


def registered(lab, service: str) -> set[tuple[int, int]]:
    """(slot, pid) of every record the registry holds for `service`."""
    return {(r["slot"], r["pid"]) for r in lab.registry.records(service)}


def wait(predicate: Callable[[], bool], seconds: float) -> bool:
    """Poll `predicate` until it holds or `seconds` pass; return its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()
