"""`Lab`: the learner's handle on the running stack, a thin facade over labkit's modules."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from .backends.local import LocalBackend
from .errors import LabError
from .gateway import Gateway
from .load import run_load
from .ports import ensure_free
from .registry import Registry
from .topology import INFRA, SERVICES, check_replicas, service

UIS = {
    "gateway (Traefik entry point)": INFRA.gateway.url,
    "Traefik dashboard": f"{INFRA.traefik_api.url}/dashboard/",
    "Prometheus": INFRA.prometheus.url,
    "etcd (registry)": INFRA.etcd.url,
}
INFRA_ADDRESSES = {
    "etcd": INFRA.etcd.address,
    "promsd": INFRA.promsd.address,
    "prometheus": INFRA.prometheus.address,
    "traefik": f"{INFRA.gateway.address} (api {INFRA.traefik_api.address})",
}


def _say(message: str) -> None:
    print(f"labkit: {message}", flush=True)


class Lab:
    def __init__(self, backend: LocalBackend | None = None,
                 progress: Callable[[str], None] = _say):
        self.backend = backend or LocalBackend()
        self.progress = progress
        self.registry = Registry()
        self.gateway = Gateway()
        self.uis = dict(UIS)

    @property
    def plot(self) -> ModuleType:
        """labkit.plots, imported on first use (matplotlib is slow to import for the CLI)."""
        from . import plots

        return plots

    # ---- lifecycle -------------------------------------------------------

    def up(self) -> Lab:
        """Start the stack (idempotent: components already running are left alone)."""
        if self.backend.is_up():
            self.backend.up(self.progress)
            self.progress("stack already running")
            return self
        started = time.monotonic()
        self.backend.up(self.progress)
        self.progress(f"stack healthy in {time.monotonic() - started:.1f} s")
        return self

    def down(self) -> None:
        """Stop every process of the stack; a no-op when nothing runs."""
        if not self.backend.is_up():
            self.progress("nothing running")
        self.backend.down(self.progress)

    def status(self) -> pd.DataFrame:
        """One row per infrastructure component and per service instance."""
        now = time.time()
        rows = []
        for proc in self.backend.processes():
            component = proc["name"]
            if proc["group"] in SERVICES:
                svc = service(proc["group"])
                slot = int(component.rsplit("-", 1)[1])
                if proc["statename"] == "STOPPED":
                    continue  # an unused replica slot
                kind, address = svc.name, svc.endpoint(slot).address
            else:
                kind, address = "infrastructure", INFRA_ADDRESSES.get(component, "")
            running = proc["statename"] == "RUNNING"
            rows.append({
                "component": component,
                "kind": kind,
                "state": proc["statename"],
                "address": address,
                "pid": proc["pid"] or None,
                "uptime_s": round(now - proc["start"], 1) if running else None,
            })
        return pd.DataFrame(rows, columns=["component", "kind", "state", "address", "pid",
                                           "uptime_s"])

    # ---- instances -------------------------------------------------------

    def scale(self, name: str, replicas: int) -> pd.DataFrame:
        """Run exactly `replicas` instances of a service; returns its registry view."""
        svc, replicas = service(name), check_replicas(replicas)
        self._require_up()
        active = self.backend.active_slots(svc)
        to_start = [s for s in range(1, replicas + 1) if s not in active]
        to_stop = [s for s in active if s > replicas]
        ensure_free((f"{name}-{s}", svc.endpoint(s)) for s in to_start)
        self.backend.start_instances(svc, to_start, self.progress)
        self.backend.stop_instances(svc, to_stop, self.progress)
        return self.instances(name)

    def instances(self, name: str | None = None) -> pd.DataFrame:
        """Instances as the registry sees them, with each lease's remaining TTL."""
        if name is not None:
            service(name)
        return self.registry.instances(name)

    def kill(self, name: str, instance: int) -> int:
        """SIGKILL one instance (a crash); supervisord restarts it. Returns the killed pid."""
        return self._signal(name, instance, "KILL", "killed")

    def pause(self, name: str, instance: int) -> int:
        """SIGSTOP one instance: alive but unresponsive (a hang). Returns its pid."""
        return self._signal(name, instance, "STOP", "paused")

    def resume(self, name: str, instance: int) -> int:
        """SIGCONT a paused instance. Returns its pid."""
        return self._signal(name, instance, "CONT", "resumed")

    def _signal(self, name: str, instance: int, signal_name: str, verb: str) -> int:
        svc = service(name)
        self._require_up()
        active = self.backend.active_slots(svc)
        if isinstance(instance, bool) or instance not in active:
            raise LabError(
                f"{name} has no running instance {instance!r}; running instances: "
                f"{', '.join(map(str, active)) or 'none'}"
            )
        pid = self.backend.instance_pid(svc, instance)
        self.backend.signal_instance(svc, instance, signal_name)
        self.progress(f"{verb} {name}-{instance} (pid {pid})")
        return pid

    # ---- traffic -----------------------------------------------------------

    def load(self, url: str, **options) -> pd.DataFrame:
        """Send load and return one row per request (see labkit.load.run_load).

        A URL on `<service>.localhost` goes through the gateway, as a browser
        or curl would send it, whatever the machine's resolver does with it.
        """
        target, host = gateway_target(url)
        options.setdefault("host", host)
        return run_load(target, **options)

    def _require_up(self) -> None:
        if not self.backend.is_up():
            raise LabError("the stack is not running; start it with labkit.connect() or "
                           "'labkit up'")


def gateway_target(url: str) -> tuple[str, str | None]:
    """Map http://<name>.localhost/... to the gateway's address plus a Host header."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LabError(f"not an HTTP URL: {url!r} (e.g. 'http://echo.localhost/')")
    if not parts.hostname.endswith(".localhost"):
        return url, None
    gateway = urlunsplit(("http", INFRA.gateway.address, parts.path or "/", parts.query, ""))
    return gateway, parts.hostname


def connect(start: bool = True) -> Lab:
    """A `Lab` for the running stack, starting it first when none runs."""
    lab = Lab()
    if start:
        lab.up()
    return lab
