"""Small helpers shared by the live-stack tests."""

from collections.abc import Callable

from labkit.errors import LabTimeout
from labkit.waits import wait_for


def registered(lab, service: str) -> set[tuple[int, int]]:
    """(slot, pid) of every record the registry holds for `service`."""
    return {(r["slot"], r["pid"]) for r in lab.registry.records(service)}


def wait(predicate: Callable[[], bool], seconds: float) -> bool:
    """True once `predicate` holds, False if it still does not after `seconds`."""
    try:
        return bool(wait_for(predicate, what="the condition", timeout=seconds))
    except LabTimeout:
        return False
