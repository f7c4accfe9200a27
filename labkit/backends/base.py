"""What labkit's generic modules (lab, faults, deploy, rollout, versions) need from a backend.

A backend runs the stack's processes somewhere (local processes under supervisord; later
containers) and answers for them by service and slot. Everything else (the registry, the
gateway, metrics, telemetry) is reached through the topology's addresses, the same in every
backend.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..errors import LabError
from ..limits import Limits
from ..topology import Service

Progress = Callable[[str], None]
ORPHANED = "ORPHANED"  # the state of a process whose supervisor is gone


@runtime_checkable
class Backend(Protocol):
    name: str
    state: Path  # the lab's state folder: generated configuration, logs, release files
    block: int  # the lab's address block (labkit.blocks): 127.<block>.0.0/16

    # ---- lifecycle ----------------------------------------------------------

    def is_up(self) -> bool: ...

    def up(self, progress: Progress) -> None:
        """Start the whole stack and wait until it is healthy; idempotent."""

    def down(self, progress: Progress) -> None:
        """Stop every process of the stack; a no-op when nothing runs."""

    def close(self) -> None:
        """Release the backend's clients (the stack keeps running)."""

    def reload_gateway(self, progress: Progress) -> None:
        """Regenerate the gateway's static configuration (e.g. its trace sampler) and put it
        in force without failing a request."""

    # ---- instances ----------------------------------------------------------

    def processes(self) -> list[dict]:
        """One dict per process: name, group, statename, pid, start (supervisord's shape);
        when the supervisor is gone, its orphans."""

    def orphans(self) -> list[dict]:
        """Processes of the lab running on without their supervisor (state ORPHANED)."""

    def active_slots(self, service: Service) -> list[int]: ...

    def ensure_free(self, service: Service, slots: list[int]) -> None:
        """Raise a LabError naming every address these instances need that is taken."""

    def start_instances(self, service: Service, slots: list[int], progress: Progress,
                        timeout: float = ...) -> None: ...

    def stop_instances(self, service: Service, slots: list[int], progress: Progress) -> None:
        """Stop gracefully; returns once the gateway dropped them and they exited."""

    def restart_instance(self, service: Service, slot: int) -> None: ...

    def crash_instance(self, service: Service, slot: int, restart: bool) -> None: ...

    def signal_instance(self, service: Service, slot: int, signal_name: str) -> None: ...

    def is_paused(self, service: Service, slot: int) -> bool:
        """True while the instance is stopped by SIGSTOP (alive, unresponsive)."""

    def instance_pid(self, service: Service, slot: int) -> int: ...

    def wait_routed(self, service: Service, slots: list[int], timeout: float = ...) -> None:
        """Wait until each instance is registered and in the gateway's view."""

    def limits(self, service: Service) -> Limits:
        """The resource limits in force on a service's instances: the topology's, or the
        last lab.limits."""

    def set_limits(self, service: Service, wanted: Limits) -> None:
        """Enforce `wanted` on every instance, running or started later (labkit.limits)."""

    def desired_replicas(self, service: Service) -> int: ...

    def set_desired_replicas(self, service: Service, replicas: int) -> None: ...

    # ---- files an instance reads when it starts -----------------------------

    def faults_file(self, service: Service, slot: int) -> Path:
        """Start-up faults (slow start) the instance reads when it starts."""

    def release_file(self, service: Service, slot: int) -> Path:
        """The release (LAB_* variables) the instance runs when it starts."""

    # ---- diagnostics --------------------------------------------------------

    def log_path(self, program: str) -> Path:
        """Where a program's log is written (e.g. "echo-2", "traefik"); it may not exist yet."""

    def log_tail(self, program: str, lines: int = 20) -> str:
        """The last lines of a program's log (e.g. "echo-2", "traefik"), for error messages."""


def require_up(backend: Backend) -> None:
    """Refuse (LabError) to act on a stack that is not running, or that runs unsupervised."""
    if backend.is_up():
        return
    orphans = backend.orphans()
    if orphans:
        raise LabError(unsupervised(backend, orphans))
    raise LabError("the stack is not running; start it with labkit.connect() or 'labkit up'")


def unsupervised(backend: Backend, orphans: list[dict]) -> str:
    """What a learner should know about a lab whose supervisor is gone, and the fix."""
    return (f"the lab in {backend.state} lost its supervisor: {len(orphans)} component(s) "
            f"still run ({', '.join(o['name'] for o in orphans)}) but nothing restarts them "
            "if they fail, and instances cannot be started or stopped. Fix: 'labkit up' (or "
            "lab.up()) supervises them again without stopping them; 'labkit down' stops them")
