"""Small helpers shared by the live-stack tests."""

from collections.abc import Callable

from labkit.errors import LabTimeout
from labkit.topology import SERVICES
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


def declared_stack(lab) -> None:
    """heal(), then every service at the topology's replica count: heal() restores the counts
    last asked for (`scale`), which another test in this worker may have changed."""
    lab.heal()
    for svc in SERVICES.values():
        lab.scale(svc.name, svc.replicas)
