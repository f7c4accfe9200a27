"""Change Traefik's configuration safely: write, read back, roll back.

Keys go in ONE etcd transaction (Traefik never sees half a change); then Traefik's API is
polled until it serves the new state. If Traefik reports an error, or does not follow within
the timeout, the previous keys are written back and the error says why, in Traefik's words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import etcd3gw
import httpx

from .errors import LabError, LabTimeout
from .kv import transact
from .waits import wait_for

READBACK_SECONDS = 3.0
REPORTED = "Traefik reports: "

Served = Callable[[Mapping[str, str]], str | None]  # None when served, else what differs
Errors = Callable[[], list[str]]  # the errors Traefik's API shows on the objects concerned


class _Rejected(LabError):
    """Traefik reported an error on the new state: no point in waiting longer."""


class ReadBack:
    def __init__(self, etcd: etcd3gw.Etcd3Client, timeout: float = READBACK_SECONDS,
                 interval: float = 0.02):
        self.etcd = etcd
        self.timeout = timeout
        self.interval = interval

    def apply(self, before: Mapping[str, str], after: Mapping[str, str], *, served: Served,
              errors: Errors, what: str, restored: str,
              leases: Mapping[str, int] | None = None) -> None:
        """Turn the keys `before` into `after` (those of `leases` attached to their etcd lease)
        and return once Traefik serves them; else roll back and raise
        LabError("Traefik did not apply <what>: <why>; <restored>")."""
        if before == after and not leases:
            return
        transact(self.etcd, before, after, leases)
        problem = self._settle(after, served, errors, stop_on_error=True)
        if problem is None:
            return
        transact(self.etcd, after, before)
        back = self._settle(before, served, errors, stop_on_error=False)
        note = "" if back is None else f" (the previous state is not back yet: {back})"
        raise LabError(f"Traefik did not apply {what}: {problem}; {restored}{note}")

    def _settle(self, state: Mapping[str, str], served: Served, errors: Errors,
                stop_on_error: bool) -> str | None:
        """None once Traefik serves `state`; else what differs. A change stops at Traefik's
        first error; a rollback waits out the errors it clears."""

        def in_force() -> bool:
            problem = _problem(state, served, errors)
            if stop_on_error and problem is not None and problem.startswith(REPORTED):
                raise _Rejected(problem)
            return problem is None

        try:
            wait_for(in_force, what="Traefik to serve the change", timeout=self.timeout,
                     interval=self.interval)
        except _Rejected as rejected:
            return str(rejected)
        except LabTimeout:
            problem = _problem(state, served, errors)
            return None if problem is None else f"{problem} after {self.timeout:g} s"
        return None


def _problem(state: Mapping[str, str], served: Served, errors: Errors) -> str | None:
    try:
        reported = errors()
        if reported:
            return REPORTED + "; ".join(dict.fromkeys(reported))
        return served(state)
    except httpx.HTTPError as exc:
        return f"Traefik's API did not answer ({exc})"
