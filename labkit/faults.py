"""Failure injection: break instances in every realistic way, and undo it all.

Process faults go through the backend (locally supervisord: crash = SIGKILL,
hang = SIGSTOP, graceful stop = SIGTERM). Behaviour faults (latency, errors, failing
readiness, slow start) go to each instance's loopback-only admin API
(stack/labstack/admin.py); a slow start is read by the instance when it
starts, from a file labkit writes.
"""

from __future__ import annotations

import builtins
import contextlib
import json
from collections.abc import Callable

import pandas as pd

from . import durations
from .admin_api import AdminApi
from .backends.base import Backend, require_up
from .errors import LabError
from .topology import SERVICES, Service, check_instance, service
from .versions import free_slots

Progress = Callable[[str], None]

BEHAVIOUR_FAULTS = ("latency", "jitter", "distribution", "error_rate", "unready",
                    "leak_mb_per_s", "cpu_burn")
DISTRIBUTIONS = ("fixed", "uniform", "exponential")
MAX_SLOW_START_S = 300.0
MAX_LEAK_MB_PER_S = 100  # the instance's own bound (labstack.faults)


def behaviour_body(**faults: object) -> dict:
    """The admin API's body for the given faults, validated before anything is sent.

    latency and jitter are durations (labkit.durations): 0.2 or "200ms"; a bare number is
    seconds. The admin API speaks milliseconds, so they are sent as ms.
    """
    unknown = sorted(set(faults) - set(BEHAVIOUR_FAULTS))
    if unknown:
        raise LabError(f"unknown fault {', '.join(map(repr, unknown))}; valid faults: "
                       f"{', '.join(BEHAVIOUR_FAULTS)} (and kill/pause/stop/slow_start)")
    body: dict = {}
    if "latency" in faults:
        if faults["latency"] is None:
            body["latency"] = None
        else:
            distribution = faults.get("distribution", "fixed")
            if distribution not in DISTRIBUTIONS:
                raise LabError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, "
                               f"got {distribution!r}")
            body["latency"] = {
                "ms": durations.milliseconds(faults["latency"], "latency"),
                "jitter_ms": durations.milliseconds(faults.get("jitter", 0), "jitter"),
                "distribution": distribution,
            }
    elif "jitter" in faults or "distribution" in faults:
        raise LabError("jitter and distribution shape an added latency: pass latency= too")
    for name, high, meaning in (("error_rate", 1, "the share of requests that fail"),
                                ("leak_mb_per_s", MAX_LEAK_MB_PER_S, "MB held per second"),
                                ("cpu_burn", 1, "the share of one core kept busy")):
        if name in faults:
            value = faults[name]
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not 0 <= value <= high):
                raise LabError(f"{name} ({meaning}) must be a number between 0 and {high}, "
                               f"got {value!r}")
            body[name] = float(value)
    if "unready" in faults:
        if not isinstance(faults["unready"], bool):
            raise LabError(f"unready must be True or False, got {faults['unready']!r}")
        body["unready"] = faults["unready"]
    return body


class Faults:
    def __init__(self, backend: Backend, progress: Progress, admin: AdminApi):
        self.backend = backend
        self.progress = progress
        self.admin = admin

    # ---- process faults ----------------------------------------------------

    def crash(self, name: str, instance: int, restart: bool = True) -> int:
        svc, pid = self._running(name, instance)
        self.backend.crash_instance(svc, instance, restart=restart)
        then = "supervisord restarts it" if restart else "it stays down"
        self.progress(f"crashed {name}-{instance} (SIGKILL to pid {pid}); {then}")
        return pid

    def hang(self, name: str, instance: int) -> int:
        svc, pid = self._running(name, instance)
        self.backend.signal_instance(svc, instance, "STOP")
        self.progress(f"paused {name}-{instance} (SIGSTOP to pid {pid}): alive, unresponsive")
        return pid

    def resume(self, name: str, instance: int) -> int:
        svc, pid = self._running(name, instance)
        self.backend.signal_instance(svc, instance, "CONT")
        self.progress(f"resumed {name}-{instance} (SIGCONT to pid {pid})")
        return pid

    def stop(self, name: str, instance: int) -> int:
        svc, pid = self._running(name, instance)
        self.backend.stop_instances(svc, [instance], self.progress)
        return pid

    def slow_start(self, name: str, instance: int, seconds: float | str) -> None:
        seconds = durations.seconds(seconds, "slow start", maximum=MAX_SLOW_START_S)
        svc, _pid = self._running(name, instance)
        path = self.backend.faults_file(svc, instance)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"slow_start_s": seconds}))
        self.backend.restart_instance(svc, instance)
        self.progress(f"restarted {name}-{instance}; it will not be ready for {seconds:g} s")

    # ---- behaviour faults --------------------------------------------------

    def inject(self, name: str, instance: int, **faults: object) -> dict:
        body = behaviour_body(**faults)
        if not body:
            raise LabError(f"no fault given; valid faults: {', '.join(BEHAVIOUR_FAULTS)}")
        svc, _pid = self._running(name, instance)
        state = self._admin(svc, instance, "PUT", body)
        self.progress(f"{name}-{instance}: {describe(state)}")
        return state

    # ---- seeing and undoing ------------------------------------------------

    def list(self) -> pd.DataFrame:
        """Every fault in force, one row each: instance, fault, detail."""
        rows = []
        for svc in SERVICES.values():
            active = self.backend.active_slots(svc)
            rows += [(svc.name, f"{svc.name}-{slot}", "stopped", "not running")
                     for slot in self._missing(svc, active)]
            for slot in active:
                rows += [(svc.name, f"{svc.name}-{slot}", kind, detail)
                         for kind, detail in self._instance_faults(svc, slot)]
        return pd.DataFrame(rows, columns=["service", "instance", "fault", "detail"])

    def heal(self) -> None:
        """Undo every fault, and bring each service back to its declared replica count."""
        for svc in SERVICES.values():
            for slot in self.backend.active_slots(svc):
                if self.backend.is_paused(svc, slot):
                    self.backend.signal_instance(svc, slot, "CONT")
                self.backend.faults_file(svc, slot).unlink(missing_ok=True)
                # one still starting has no API yet; it comes up clean, its file is gone
                with contextlib.suppress(LabError):
                    self._admin(svc, slot, "DELETE")
            self.backend.start_instances(
                svc, self._missing(svc, self.backend.active_slots(svc)), self.progress)
            self.backend.wait_routed(svc, self.backend.active_slots(svc))
        self.progress("healed: no fault in force, every service at its declared replicas")

    # ---- helpers -----------------------------------------------------------

    def _running(self, name: str, instance: int) -> tuple[Service, int]:
        svc = service(name)
        check_instance(svc, instance)
        require_up(self.backend)  # after every check of the arguments: bad ones never reach it
        active = self.backend.active_slots(svc)
        if instance not in active:
            raise LabError(f"{name} has no running instance {instance!r}; running instances: "
                           f"{', '.join(map(str, active)) or 'none'}")
        return svc, self.backend.instance_pid(svc, instance)

    def _missing(self, svc: Service, active: builtins.list[int]) -> builtins.list[int]:
        """The slots heal would start to bring `svc` back to its declared count: a count, not
        slots 1..N (after a rollout the fleet may run in slots 1, 2 and 4)."""
        return free_slots(active)[:max(self.backend.desired_replicas(svc) - len(active), 0)]

    # builtins.list: inside the class, `list` is the method above
    def _instance_faults(self, svc: Service, slot: int) -> builtins.list[tuple[str, str]]:
        if self.backend.is_paused(svc, slot):
            return [("hang", "paused (SIGSTOP)")]
        try:
            state = self._admin(svc, slot, "GET")
        except LabError as error:
            planned = self._planned_slow_start(svc, slot)
            if planned is not None:  # restarted by slow_start, its API not up yet
                return [("slow_start", f"starting; not ready until {planned:g} s after")]
            return [("unreachable", str(error).splitlines()[0])]
        found = []
        if state.get("latency"):
            found.append(("latency", describe({"latency": state["latency"]})))
        if state.get("error_rate"):
            found.append(("error_rate", f"{state['error_rate']:.0%} of requests fail"))
        if state.get("unready"):
            found.append(("unready", "alive, failing readiness"))
        if state.get("leak_mb_per_s"):
            found.append(("leak", describe({k: state[k] for k in ("leak_mb_per_s", "leaked_mb")})))
        if state.get("cpu_burn"):
            found.append(("cpu_burn", describe({"cpu_burn": state["cpu_burn"]})))
        if state.get("slow_start_remaining_s"):
            found.append(("slow_start", f"ready in {state['slow_start_remaining_s']:.1f} s"))
        return found

    def _planned_slow_start(self, svc: Service, slot: int) -> float | None:
        """The slow start an instance was restarted with (its start-up faults file), if any."""
        try:
            return float(json.loads(self.backend.faults_file(svc, slot).read_text())
                         ["slow_start_s"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _admin(self, svc: Service, slot: int, method: str, body: dict | None = None) -> dict:
        return self.admin.call(svc, slot, method, "faults", body)


def describe(state: dict) -> str:
    """A one-line summary of an admin API state, for progress messages."""
    parts = []
    latency = state.get("latency")
    if latency:
        jitter = f" ± {latency['jitter_ms']:g}" if latency.get("jitter_ms") else ""
        parts.append(f"+{latency['ms']:g}{jitter} ms latency ({latency['distribution']})")
    if state.get("error_rate"):
        parts.append(f"{state['error_rate']:.0%} errors")
    if state.get("unready"):
        parts.append("unready")
    if state.get("leak_mb_per_s"):
        parts.append(f"leaking {state['leak_mb_per_s']:g} MB/s"
                     + (f" ({state['leaked_mb']:g} MB held)" if "leaked_mb" in state else ""))
    if state.get("cpu_burn"):
        parts.append(f"burning {state['cpu_burn']:.0%} of a core")
    return ", ".join(parts) or "no behaviour fault"
