"""Infrastructure chaos: break one component of the running local lab under load, and measure
what the clients saw and how long the lab took to recover.

`strike` sends open-loop load through the gateway (labkit's load generator) and, a moment in,
SIGKILLs one component (supervisord restarts it), or pauses it (SIGSTOP, then SIGCONT after
`pause_s`: e.g. etcd for longer than the lease TTL), or SIGKILLs supervisord itself (then
`Lab.up` supervises the orphaned lab again). `Snapshot` is what must survive: the routes,
policies and splits Traefik serves, the registrations, and the stored metrics and telemetry.
The chaos tests assert on both; `bench/chaos.py` prints them.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import dataclass
from typing import cast

import httpx
import pandas as pd

from .backends.local import LocalBackend, health_url
from .backends.local_config import infra_name
from .errors import LabError
from .lab import Lab
from .topology import INFRA_COMPONENTS, SERVICES, infra
from .waits import wait_for

SUPERVISOR = "supervisord"
COMPONENTS = (*INFRA_COMPONENTS, SUPERVISOR)
TARGET = "http://echo.localhost/"
RECOVERY_TIMEOUT = 30.0


def dress(lab: Lab) -> None:
    """Give the lab something of every kind a strike must leave intact, beside the declared
    routes and registrations: a gateway policy (a rate limit far above the chaos load), a
    second version and a traffic split."""
    lab.heal()
    lab.scale("echo", 3)
    lab.policies.rate_limit("echo", average=1000, burst=1000)
    lab.deploy("echo", "v2", 1)
    lab.shift("echo", {"v1": 90, "v2": 10})


def undress(lab: Lab) -> None:
    lab.heal()
    lab.policies.clear("echo")


@dataclass(frozen=True)
class Outcome:
    """What one strike cost. Times are seconds from the fault (from SIGCONT for a pause)."""

    component: str
    fault: str  # "kill", "pause 5s"
    requests: int
    failed: int  # requests with no 200 answer
    failed_until_s: float | None  # when the last failed request ended; None: none failed
    healthy_s: float  # the component answers its health check again (a new process if killed)
    routed_s: float  # every running instance is registered and routed by its current pid
    load: pd.DataFrame  # one row per request (labkit.load), times from the load's start
    fault_at: float  # when the fault (or SIGCONT) was given, in the load's time


def strike(lab: Lab, component: str, pause_s: float | None = None, rps: float = 50,
           before_s: float = 1.0, after_s: float = 4.0) -> Outcome:
    """Break `component` `before_s` into `before_s + (pause_s or 0) + after_s` seconds of load
    at `rps` through the gateway; wait until the lab recovered (bounded), then for the load."""
    backend = _local(lab)
    if component not in COMPONENTS:
        raise LabError(f"unknown component {component!r}; valid: {', '.join(COMPONENTS)}")
    traffic = lab.start_load(TARGET, rps=rps, seconds=before_s + (pause_s or 0) + after_s,
                             timeout=2)
    time.sleep(before_s)
    pid = pid_of(backend, component)
    if pause_s is None:
        os.kill(pid, signal.SIGKILL)
    else:
        os.kill(pid, signal.SIGSTOP)
        time.sleep(pause_s)
        os.kill(pid, signal.SIGCONT)
    fault_at = time.time()
    if component == SUPERVISOR:
        lab.up()  # the lab keeps serving meanwhile; up supervises it again
    else:
        wait_for(lambda: httpx.get(health_url(component), timeout=1).status_code == 200
                 and (pause_s is not None or pid_of(backend, component) != pid),
                 what=f"{component} to answer {health_url(component)} again",
                 timeout=RECOVERY_TIMEOUT)
    healthy_s = time.time() - fault_at
    for service in SERVICES.values():
        backend.wait_routed(service, backend.active_slots(service), timeout=RECOVERY_TIMEOUT)
    routed_s = time.time() - fault_at
    load = traffic.result()
    fault_t = fault_at - load.attrs["started_at"]
    failed = load[load["status"] != 200]
    return Outcome(
        component=component, fault="kill" if pause_s is None else f"pause {pause_s:g}s",
        requests=len(load), failed=len(failed),
        failed_until_s=float(failed["end"].max() - fault_t) if len(failed) else None,
        healthy_s=healthy_s, routed_s=routed_s, load=load, fault_at=fault_t,
    )


def pid_of(backend: LocalBackend, component: str) -> int:
    if component == SUPERVISOR:
        return backend.supervisor.pid()
    return backend.supervisor.info(infra_name(component))["pid"]


def _local(lab: Lab) -> LocalBackend:
    if not isinstance(lab.backend, LocalBackend):
        raise LabError("chaos needs the local backend: it signals the lab's processes")
    return lab.backend


@dataclass(frozen=True)
class Snapshot:
    """What a strike must leave intact."""

    gateway: dict  # Traefik's routers, services (servers or weights) and middlewares
    registered: set[tuple[str, int, str]]  # (service, slot, version) in the registry
    request_id: str  # a request whose logs the store holds
    taken_at: float  # epoch seconds; Prometheus holds samples from before it

    @classmethod
    def take(cls, lab: Lab) -> Snapshot:
        """Send one request with a fresh request id and wait until the store holds its logs;
        then read what the gateway serves and what the registry holds, at a moment when
        every check of `lost` passes (so that each can fail only because of a strike)."""
        request_id = uuid.uuid4().hex
        answer = httpx.get(f"{infra().gateway.url}/", timeout=5,
                           headers={"Host": "echo.localhost", "X-Request-Id": request_id})
        answer.raise_for_status()
        wait_for(lambda: len(lab.logs(request_id=request_id)) > 0,
                 what=f"the logs of request {request_id} in the store", timeout=20)

        def now() -> Snapshot:
            return cls(gateway=gateway_view(lab), registered=registered(lab),
                       request_id=request_id, taken_at=time.time())

        def whole() -> Snapshot | None:
            taken = now()
            return None if taken.lost(lab) else taken

        # right after `up`, Prometheus may not hold 10 s of samples yet
        return cast(Snapshot, wait_for(whole, what="a snapshot in which nothing is missing",
                                       timeout=30, diagnose=lambda: "\n".join(now().lost(lab))))

    def wait_intact(self, lab: Lab, timeout: float = 20) -> None:
        wait_for(lambda: not self.lost(lab), what="the lab to be whole as in the snapshot",
                 timeout=timeout, diagnose=lambda: "\n".join(self.lost(lab)))

    def lost(self, lab: Lab) -> list[str]:
        """What is no longer as it was (empty: all intact). Prometheus and the store must
        still hold data from before, and be collecting again."""
        lost = []
        now = gateway_view(lab)
        if now != self.gateway:
            lost.append(f"the gateway serves {now}, not {self.gateway}")
        if registered(lab) != self.registered:
            lost.append(f"the registry holds {sorted(registered(lab))}, "
                        f"not {sorted(self.registered)}")
        if lab.logs(request_id=self.request_id).empty:
            lost.append(f"the store lost the logs of request {self.request_id}")
        before = lab.metrics('count_over_time(up{job="traefik"}[10s])', end=self.taken_at)
        if before.empty:
            lost.append(f"Prometheus holds no sample of Traefik's from the 10 s before "
                        f"{self.taken_at:.1f}")
        since = time.time() - 5  # two scrape intervals and a half
        scraped = lab.metrics(f'count(timestamp(up{{job="services"}}) > {since})')
        if scraped.empty or scraped["value"].iloc[0] < len(self.registered):
            lost.append(f"Prometheus scraped {scraped['value'].tolist()} of "
                        f"{len(self.registered)} instances in the last 5 s")
        return lost


def gateway_view(lab: Lab) -> dict:
    """Traefik's routers (rule, service, middlewares), services (servers or weights) and
    middlewares of the lab (its etcd provider), as its API serves them."""
    def get(kind: str) -> list[dict]:
        response = lab.gateway.api.get(f"/api/http/{kind}", params={"per_page": 1000})
        response.raise_for_status()
        return list(response.json())

    routers = {r["name"]: (r.get("rule"), r.get("service"), tuple(r.get("middlewares", [])))
               for r in get("routers") if r.get("provider") == "etcd"}
    services = {}
    for s in get("services"):
        if s.get("provider") != "etcd":
            continue
        servers = s.get("loadBalancer", {}).get("servers", [])
        weighted = s.get("weighted", {}).get("services", [])
        services[s["name"]] = (tuple(sorted(x["url"] for x in servers))
                               or tuple(sorted((w["name"], w.get("weight")) for w in weighted)))
    middlewares = sorted(m["name"] for m in get("middlewares") if m.get("provider") == "etcd")
    return {"routers": routers, "services": services, "middlewares": middlewares}


def registered(lab: Lab) -> set[tuple[str, int, str]]:
    return {(r["service"], r["slot"], r["version"]) for r in lab.registry.records()}
