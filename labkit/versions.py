"""Which version each instance slot runs: release files that labkit writes before a slot starts.

supervisord declares every slot once, with the service's declared version (LAB_VERSION). To
run another version in a slot, labkit writes the slot's release file first
(`.lab/releases/<service>-<slot>.json`: the release's LAB_* variables, see
`topology.Release`); the instance reads it when it starts (LAB_RELEASE_FILE), as it reads its
faults file. Switching a running instance's version means replacing the process, as in a
real deployment.

Each service also has a *current release* (after a rolling upgrade to v2, v2): every slot not
running keeps the current release's file, so a slot that `scale`, `heal` or supervisord's own
restart starts later runs the fleet's version, not whatever it ran last.
"""

from __future__ import annotations

import json
from pathlib import Path

from .backends.base import Backend
from .topology import MAX_REPLICAS, Service

SLOTS = range(1, MAX_REPLICAS + 1)


def free_slots(active: list[int]) -> list[int]:
    """The slots not running, lowest first: where new instances start."""
    return [s for s in SLOTS if s not in active]


class ReleaseFiles:
    def __init__(self, backend: Backend):
        self.backend = backend

    def version(self, svc: Service, slot: int) -> str:
        """The version slot `slot` runs (or will run when it starts)."""
        path = self.backend.release_file(svc, slot)
        if not path.exists():
            return svc.version
        return json.loads(path.read_text()).get("LAB_VERSION", svc.version)

    def assign(self, svc: Service, slot: int, version: str) -> None:
        """Make `slot` start as `version` (the declared version needs no file)."""
        path = self.backend.release_file(svc, slot)
        if version == svc.version:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(svc.release(version).environment()))

    def current(self, svc: Service) -> str:
        """The service's current release: what a slot started from now on runs."""
        path = self._current_file(svc)
        return json.loads(path.read_text())["version"] if path.exists() else svc.version

    def adopt(self, svc: Service, version: str, running: list[int]) -> None:
        """Make `version` the current release: every slot not running starts as it from now."""
        path = self._current_file(svc)
        if version == svc.version:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"version": version}))
        for slot in SLOTS:
            if slot not in running:
                self.assign(svc, slot, version)

    def release_slot(self, svc: Service, slot: int) -> None:
        """A slot stopped: it starts as the current release next time."""
        self.assign(svc, slot, self.current(svc))

    def reset(self, svc: Service) -> None:
        """Back to the declared version everywhere (for slots started from now on)."""
        self._current_file(svc).unlink(missing_ok=True)
        for slot in SLOTS:
            self.backend.release_file(svc, slot).unlink(missing_ok=True)

    def _current_file(self, svc: Service) -> Path:
        return self.backend.state / "releases" / f"{svc.name}.json"
