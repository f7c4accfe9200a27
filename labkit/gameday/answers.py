"""Answers: what a valid one is, whether it is right, and the debrief. No I/O.

An answer names a service, an "instance" (what the cause is about: an instance such as
"echo-2", a version such as "v2", or a client address in 127.0.0.0/8) and a cause from the
fixed vocabulary (incidents.CAUSES). An answer that names something that does not exist is
refused with the valid choices and is not an attempt.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..errors import LabError
from ..load import LOOPBACK
from ..topology import MAX_REPLICAS, SERVICES, service
from .incidents import CAUSES, Incident, Truth


@dataclass(frozen=True)
class Verdict:
    solved: bool
    attempts: int
    right: tuple[str, ...]  # the fields the answer got right: service, instance, cause

    def __str__(self) -> str:
        if self.solved:
            return (f"Solved in {self.attempts} attempt{'s' * (self.attempts > 1)}: "
                    f"lab.gameday.debrief() tells the whole story, lab.gameday.end() "
                    f"restores the lab.")
        right = ", ".join(self.right) or "none"
        return (f"Not yet (attempt {self.attempts}): {len(self.right)} of 3 right ({right}). "
                f"Look again at the telemetry, or give up with lab.gameday.debrief().")


def valid_instances(name: str) -> str:
    """What `instance` may be for service `name`, for error messages."""
    svc = service(name)
    return (f"an instance of {svc.name} ({svc.instance_id(1)} to "
            f"{svc.instance_id(MAX_REPLICAS)}), one of its versions "
            f"({', '.join(svc.versions)}) or a client address in {LOOPBACK}")


def check_answer(service_name: object, instance: object, cause: object) -> Truth:
    """The answer as a Truth, or a LabError naming the valid values (before it counts)."""
    if service_name not in SERVICES:
        raise LabError(f"unknown service {service_name!r}; valid services: "
                       f"{', '.join(sorted(SERVICES))}")
    svc = service(str(service_name))
    if cause not in CAUSES:
        raise LabError(f"unknown cause {cause!r}; valid causes: {', '.join(CAUSES)}")
    named = {svc.instance_id(slot) for slot in range(1, MAX_REPLICAS + 1)} | set(svc.versions)
    if not isinstance(instance, str) or (instance not in named and not _client(instance)):
        raise LabError(f"unknown instance {instance!r}; valid: {valid_instances(svc.name)}")
    return Truth(svc.name, instance, str(cause))


def _client(address: str) -> bool:
    try:
        return ipaddress.IPv4Address(address) in LOOPBACK
    except ValueError:
        return False


def verdict(truth: Truth, answer: Truth, attempts: int) -> Verdict:
    right = tuple(field for field in ("service", "instance", "cause")
                  if getattr(truth, field) == getattr(answer, field))
    return Verdict(len(right) == 3, attempts, right)


def debrief(incident: Incident, verdicts: list[Verdict]) -> str:
    """What happened, what showed it, and how the hunt went."""
    truth = incident.truth
    if not verdicts:
        outcome = "No answer was given."
    elif verdicts[-1].solved:
        outcome = f"You found it in {verdicts[-1].attempts} attempt(s)."
    else:
        outcome = f"Not found in {len(verdicts)} attempt(s)."
    return "\n".join([
        f"Game day, seed {incident.seed}: {incident.kind.title}.",
        f"What happened: {incident.what_happened}",
        f"The answer: service={truth.service!r}, instance={truth.instance!r}, "
        f"cause={truth.cause!r}.",
        f"What showed it: {incident.kind.evidence}",
        outcome,
    ])
