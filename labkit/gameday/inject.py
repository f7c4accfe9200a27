"""Breaking the lab for an incident, with labkit's own fault and deployment APIs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..topology import service
from .incidents import BAD_VERSION, SERVICE, Incident

if TYPE_CHECKING:
    from ..lab import Lab

LATENCY = "250ms"
ERROR_RATE = 0.3
BAD_RELEASE_REPLICAS = 2
BAD_RELEASE_WEIGHT = 30  # percent of the traffic the bad version gets
BAD_RELEASE_ERROR_RATE = 0.5
MEMORY_LIMIT = "128M"  # an instance needs about 50 MiB (notebook 18)
LEAK_MB_PER_S = 10


def inject(lab: Lab, incident: Incident) -> None:
    """Make the incident happen in the running lab (echo at its declared replicas)."""
    cause, slot = incident.truth.cause, incident.slot
    if cause == "slow_instance":
        lab.fault(SERVICE, slot, latency=LATENCY)
    elif cause == "failing_instance":
        lab.fault(SERVICE, slot, error_rate=ERROR_RATE)
    elif cause == "bad_release":
        lab.deploy(SERVICE, BAD_VERSION, BAD_RELEASE_REPLICAS)
        bad = lab.instances(SERVICE).query("version == @BAD_VERSION")["slot"]
        for bad_slot in bad:
            lab.fault(SERVICE, int(bad_slot), error_rate=BAD_RELEASE_ERROR_RATE)
        lab.shift(SERVICE, {service(SERVICE).version: 100 - BAD_RELEASE_WEIGHT,
                            BAD_VERSION: BAD_RELEASE_WEIGHT})
    elif cause == "hung_instance":
        lab.gateway.health_checks(SERVICE, False)
        lab.pause(SERVICE, slot)
    elif cause == "memory_leak":
        lab.limits(SERVICE, memory=MEMORY_LIMIT)
        lab.fault(SERVICE, slot, leak_mb_per_s=LEAK_MB_PER_S)
    # noisy_client: nothing breaks; its traffic is the incident (game.clients)
