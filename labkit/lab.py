"""`Lab`: the learner's handle on the running stack, a thin facade over labkit's modules."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

import grpc
import pandas as pd

from . import (
    autoscale,
    budget,
    grpc_client,
    ip_guard,
    limits,
    links,
    log_analysis,
    telemetry_settings,
)
from .admin_api import AdminApi
from .backends.base import ORPHANED, Backend, require_up, unsupervised
from .backends.local import LocalBackend
from .background import BackgroundJobs
from .course import checks, exercises
from .deploy import Deployments
from .errors import LabError
from .faults import Faults
from .gameday.game import GameDay
from .gateway import Gateway
from .kv import etcd_client
from .load import check as check_load
from .load import run_load
from .metrics import Prometheus
from .policies import Policies
from .registry import Registry
from .security import Security
from .servicelock import ServiceLock, every_service
from .telemetry import Telemetry, When
from .telemetry_settings import TelemetrySettings
from .tokens import Tokens, check_request
from .topology import SERVICES, check_replicas, infra, service
from .versions import free_slots

MAX_BACKGROUND_LOADS = 8  # start_load: each runs on its own thread, all at once
GATEWAY_SERVICE = "traefik"  # the service.name of Traefik's spans and access log


def infra_addresses() -> dict[str, str]:
    """Where each infrastructure component of this process's lab listens, for `status`."""
    at = infra()
    return {
        "etcd": at.etcd.address,
        "promsd": at.promsd.address,
        "prometheus": at.prometheus.address,
        "telemetry": at.telemetry.address,
        "traefik": f"{at.gateway.address} (api {at.traefik_api.address})",
    }


def _say(message: str) -> None:
    print(f"labkit: {message}", flush=True)


class Lab:
    def __init__(self, backend: Backend | None = None,
                 progress: Callable[[str], None] = _say):
        self.backend = backend or LocalBackend()
        self.progress = progress
        self._loads = BackgroundJobs(MAX_BACKGROUND_LOADS, "background loads")
        self._autoscalers: dict[str, autoscale.Autoscaler] = {}
        self._guards: dict[str, ip_guard.Guard] = {}
        self._gameday: GameDay | None = None
        self._open_clients()

    def _open_clients(self) -> None:
        """Clients of the lab's components, at the addresses of the backend's block."""
        self._etcd = etcd_client()  # one client for the registry, policies and deployments
        self.registry = Registry(self._etcd)
        # the instances' admin APIs (faults, telemetry settings), with the lab's token
        self._admin = AdminApi(self.backend.state)
        self._faults = Faults(self.backend, self.progress, self._admin)
        self.gateway = Gateway()
        self.policies = Policies(self._etcd)  # timeouts, retries, breakers, limits, at the gateway
        self.prometheus = Prometheus()
        self.store = Telemetry()  # traces and logs, from the telemetry store
        self._tokens = Tokens(self.backend.state)  # the auth service's token endpoint
        self.security = Security(self.backend, self.gateway, self.progress)  # mTLS to the instances
        self._deployments = Deployments(self.backend, self.progress, self._etcd,
                                        prometheus=self.prometheus)
        self.uis = links.uis()

    def close(self) -> None:
        """Close every client this Lab opened; the stack keeps running (down() stops it).
        A closed Lab cannot be used again: make a new one with labkit.connect()."""
        self._stop_control_loops()
        self._close_clients()
        self.backend.close()

    def _close_clients(self) -> None:
        self._admin.close()
        self._deployments.close()
        self.gateway.close()
        self.policies.close()
        self.prometheus.close()
        self.store.close()
        self._tokens.close()
        self._etcd.session.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def gameday(self) -> GameDay:
        """The game day (labkit.gameday): start(seed) a hidden incident, answer(service=...,
        instance=..., cause=...), debrief(), end()."""
        if self._gameday is None:
            self._gameday = GameDay(self)
        return self._gameday

    @property
    def plot(self) -> ModuleType:
        """labkit.plots, imported on first use (matplotlib is slow to import for the CLI)."""
        from . import plots

        return plots

    # ---- lifecycle -------------------------------------------------------

    def up(self, sample: float | None = None, keep_slower_than: float | str | None = None,
           log_level: str | None = None) -> Lab:
        """Start the stack (idempotent: components already running are left alone).

        A stack started here runs the default telemetry settings with the given ones changed
        (see telemetry()); on a running stack, given ones are changed live."""
        if self.backend.is_up():
            self.backend.up(self.progress)
            self.progress("stack already running")
            if (sample, keep_slower_than, log_level) != (None, None, None):
                self.telemetry(sample, keep_slower_than, log_level)
            return self
        settings = TelemetrySettings().changed(sample, keep_slower_than, log_level)
        telemetry_settings.save(self.backend.state, settings)  # read by all that starts next
        started, block = time.monotonic(), self.backend.block
        self.backend.up(self.progress)
        if self.backend.block != block:  # another lab took that block first: follow the move
            self._close_clients()
            self._open_clients()
        self.progress(f"stack healthy in {time.monotonic() - started:.1f} s")
        return self

    def down(self) -> None:
        """Stop every process of the stack; a no-op when nothing runs."""
        if not self.backend.is_up() and not self.backend.orphans():
            self.progress("nothing running")
        self.backend.down(self.progress)
        self.backend.close()  # its clients talk to components that are gone

    def status(self) -> pd.DataFrame:
        """One row per infrastructure component and per service instance: its state, address,
        pid, uptime, memory in use (RSS, MiB), for instances their resource limits and how
        they are enforced (see limits()), the share of requests each instance and the
        gateway trace and, for instances, how slow an untraced request must be to be
        recorded anyway (read back from them; see telemetry()). Components whose supervisor is
        gone are ORPHANED (and the fix is printed)."""
        now = time.time()
        rows = []
        set_limits = {svc.name: self.backend.limits(svc) for svc in SERVICES.values()}
        enforced_by = limits.mechanism() if any(set_limits.values()) else ""
        processes = self.backend.processes()
        sampling = telemetry_settings.in_force(self._admin, self.backend)
        orphans = [p for p in processes if p["statename"] == ORPHANED]
        if orphans:
            self.progress(unsupervised(self.backend, orphans))
        for proc in processes:
            component = proc["name"]
            wanted = limits.Limits()
            if proc["group"] in SERVICES:
                svc = service(proc["group"])
                slot = int(component.rsplit("-", 1)[1])
                if proc["statename"] == "STOPPED":
                    continue  # an unused replica slot
                kind, address = svc.name, svc.endpoint(slot).address
                wanted = set_limits[svc.name]
            else:
                kind, address = "infrastructure", infra_addresses().get(component, "")
            running = proc["statename"] in ("RUNNING", ORPHANED)
            rows.append({
                "component": component,
                "kind": kind,
                "state": proc["statename"],
                "address": address,
                "pid": proc["pid"] or None,
                "uptime_s": round(now - proc["start"], 1) if running else None,
                "memory_mb": limits.rss_mb(proc["pid"]) if running else None,
                "memory_limit_mb": wanted.memory_mb,
                "cpu_limit": wanted.cpu,
                "limits_by": enforced_by if wanted else "",
                "trace_sample": sampling.get(component, {}).get("sample") if running else None,
                "keep_slower_than_ms": (sampling.get(component, {}).get("keep_slower_than_ms")
                                        if running else None),
            })
        return pd.DataFrame(rows, columns=["component", "kind", "state", "address", "pid",
                                           "uptime_s", "memory_mb", "memory_limit_mb",
                                           "cpu_limit", "limits_by", "trace_sample",
                                           "keep_slower_than_ms"])

    # ---- instances -------------------------------------------------------

    def scale(self, name: str, replicas: int) -> pd.DataFrame:
        """Run exactly `replicas` instances of a service; returns its registry view. Refused
        while another scale, heal or deployment of the service runs (from any kernel)."""
        svc, replicas = service(name), check_replicas(replicas)
        require_up(self.backend)
        with ServiceLock(self.backend.state, svc.name, f"scale to {replicas}"):
            active = self.backend.active_slots(svc)
            # by count, whatever slots run (a rollout leaves e.g. 1, 2, 4): the lowest free
            # slots start, the highest running ones stop
            to_start = free_slots(active)[:max(replicas - len(active), 0)]
            to_stop = active[replicas:]
            self._deployments.budgets.check(svc, replicas, f"scaling {svc.name} to {replicas}")
            self.backend.ensure_free(svc, to_start)
            self.backend.set_desired_replicas(svc, replicas)
            self.backend.start_instances(svc, to_start, self.progress)
            self.backend.stop_instances(svc, to_stop, self.progress)
        return self.instances(name)

    def instances(self, name: str | None = None) -> pd.DataFrame:
        """Instances as the registry sees them, with each lease's remaining TTL."""
        if name is not None:
            service(name)
        return self.registry.instances(name)

    def discovery(self, name: str) -> pd.DataFrame:
        """The registry's view and the gateway's, side by side: one row per address either
        of them knows, with the lease's TTL left and Traefik's status for it."""
        svc = service(name)
        registered = self.instances(svc.name)
        routed = pd.DataFrame(  # by address: http, h2c or, on mTLS, https (lab.security)
            [(url.split("://", 1)[-1], status)
             for url, status in self.gateway.servers(svc.name).items()],
            columns=["address", "gateway"])
        view = registered.merge(routed, on="address", how="outer")
        view["gateway"] = view["gateway"].fillna("not routed")
        return view[["address", "instance", "pid", "lease_ttl_s", "gateway"]]

    # ---- faults (see labkit.faults) --------------------------------------

    def kill(self, name: str, instance: int, restart: bool = True) -> int:
        """Crash one instance (SIGKILL). supervisord restarts it unless restart=False.
        Returns the killed pid."""
        return self._faults.crash(name, instance, restart=restart)

    def pause(self, name: str, instance: int) -> int:
        """Hang one instance (SIGSTOP): alive but unresponsive. Returns its pid."""
        return self._faults.hang(name, instance)

    def resume(self, name: str, instance: int) -> int:
        """SIGCONT a paused instance. Returns its pid."""
        return self._faults.resume(name, instance)

    def stop(self, name: str, instance: int) -> int:
        """Stop one instance gracefully (SIGTERM: it deregisters, drains, exits)."""
        return self._faults.stop(name, instance)

    def fault(self, name: str, instance: int, **faults: object) -> dict:
        """Change how a running instance behaves, e.g. latency="200ms", jitter="50ms",
        distribution="uniform", error_rate=0.2, unready=True, leak_mb_per_s=10 (memory held
        until the fault ends, up to 1 GiB), cpu_burn=0.5 (half a core kept busy inside the
        process). 0 ends a leak or a burn. Returns its fault state."""
        return self._faults.inject(name, instance, **faults)

    def slow_start(self, name: str, instance: int, seconds: float | str) -> None:
        """Restart an instance that then stays unready for `seconds` (a slow warm-up)."""
        self._faults.slow_start(name, instance, seconds)

    def limits(self, name: str | None = None, **change: object) -> pd.DataFrame:
        """Each running instance's resource limits, the memory it uses (RSS, MiB) and how the
        limits are enforced (labkit.limits). With memory= and/or cpu=, set them on every
        instance of service `name`, now and at each later start: memory="96M" (or MiB),
        cpu=0.5 (cores), None removes one; the other stays. Refused while another scale,
        heal or deployment of the service runs."""
        unknown = sorted(set(change) - {"memory", "cpu"})
        if unknown:
            raise LabError(f"unknown limit {', '.join(map(repr, unknown))}; valid: memory, cpu")
        services = list(SERVICES.values()) if name is None else [service(name)]
        if change:
            if name is None:
                raise LabError("name the service to limit, e.g. lab.limits('echo', memory='96M')")
            svc = services[0]
            with ServiceLock(self.backend.state, svc.name, "set limits"):
                current = self.backend.limits(svc).as_dict()  # the one change does not set
                wanted = limits.parse(change.get("memory", current["memory_mb"]),
                                      change.get("cpu", current["cpu"]))
                require_up(self.backend)  # after every check of the arguments
                self._deployments.budgets.check(
                    svc, len(self.backend.active_slots(svc)), f"these limits on {svc.name}",
                    new_limits=wanted)
                self.backend.set_limits(svc, wanted)
            self.progress(f"{svc.name}: {limits.describe(wanted)} ({limits.mechanism()})")
        require_up(self.backend)
        return limits.table(self.backend, services)

    def autoscale(self, name: str, min: int, max: int,  # noqa: A002 - the HPA's words
                  target_rps_per_instance: float, stabilization: float | str = "30s",
                  interval: float | str = "2s") -> autoscale.Autoscaler:
        """Start a control loop (labkit.autoscale) that keeps `name` at about
        `target_rps_per_instance` requests per second per instance, between `min` and `max`
        instances and within the lab's budget: up at once, down only after `stabilization`.
        Returns the running Autoscaler: .decisions (a DataFrame, one row per `interval`) and
        .stop(). Refused while a scale, heal or deployment of the service runs, or while it
        is autoscaled already; heal() stops every autoscaler."""
        svc = service(name)
        policy = autoscale.check_policy(min, max, target_rps_per_instance, stabilization,
                                        interval)
        require_up(self.backend)
        running = self._autoscalers.get(svc.name)
        if running is not None and running.running:
            raise LabError(f"{svc.name} is autoscaled already: stop() that one first")
        with ServiceLock(self.backend.state, svc.name, "start autoscaling"):
            pass  # refused here, naming it, while a deployment or a scale runs
        rate = autoscale.gateway_rate(svc)

        def observe() -> float | None:
            frame = self.prometheus.query(rate)
            return float(frame["value"].iloc[0]) if len(frame) else None

        scaler = autoscale.Autoscaler(
            svc.name, policy, observe, lambda: len(self.backend.active_slots(svc)),
            lambda n: self.scale(svc.name, n), self.progress)
        self._autoscalers[svc.name] = scaler
        return scaler

    def guard(self, name: str, max_rps: float, window: float | str = "5s",
              ban: float | str = "30s", interval: float | str = "1s") -> ip_guard.Guard:
        """Start a guard (labkit.ip_guard) that reads the gateway's access log and bans from
        `name` (403 at the gateway, lab.policies.deny) for `ban` any client that sent more
        than `max_rps` requests per second on average over `window`. Returns the running
        Guard: .decisions (a DataFrame of bans and lifts) and .stop(), which lifts its bans.
        While it runs it owns the service's deny list; heal() stops every guard."""
        svc = service(name)
        rule = ip_guard.check_rule(max_rps, window, ban, interval)
        require_up(self.backend)
        running = self._guards.get(svc.name)
        if running is not None and running.running:
            raise LabError(f"{svc.name} is guarded already: stop() that one first")

        def read_access(since: float) -> pd.DataFrame:
            logs = self.store.logs(service=GATEWAY_SERVICE, since=since, limit=100_000)
            return log_analysis.access_log(logs)

        def deny(bans: dict[str, float]) -> None:
            if bans:
                self.policies.deny(svc.name, list(bans),
                                   ttl=ip_guard.lease_seconds(bans, time.time()))
            else:
                self.policies.remove(svc.name, "ip-deny")

        guard = ip_guard.Guard(svc.name, svc.host_rule, rule, read_access, deny, self.progress)
        self._guards[svc.name] = guard
        return guard

    def _stop_control_loops(self) -> None:
        """Stop every autoscaler and guard this Lab started."""
        for scaler in self._autoscalers.values():
            scaler.stop()
        for guard in self._guards.values():
            guard.stop()
        self._autoscalers.clear()
        self._guards.clear()

    def budget(self, **change: object) -> pd.DataFrame:
        """The lab's capacity budget (labkit.budget): per resource, what it allows and what
        the running instances use. With memory= (the sum of the instances' memory limits,
        e.g. "1G"), cpu= (the sum of their CPU limits, cores) and/or max_replicas= (per
        service), set it; None removes one. scale, deploy, a rollout's surge and limits are
        then refused beyond it. heal() removes the budget."""
        unknown = sorted(set(change) - {"memory", "cpu", "max_replicas"})
        if unknown:
            raise LabError(f"unknown budget {', '.join(map(repr, unknown))}; valid: memory, "
                           "cpu, max_replicas")
        budgets = self._deployments.budgets
        if change:
            with every_service(self.backend.state, SERVICES, "set the budget"):
                current = budgets.get()
                wanted = budget.parse(change.get("memory", current.memory_mb),
                                      change.get("cpu", current.cpu),
                                      change.get("max_replicas", current.max_replicas))
                require_up(self.backend)
                budgets.set(wanted)
        require_up(self.backend)
        return budgets.table()

    def faults(self) -> pd.DataFrame:
        """Every fault in force: one row per instance and fault."""
        require_up(self.backend)
        return self._faults.list()

    def heal(self) -> None:
        """Undo every fault and deployment (splits, other versions) and restore each
        service's declared version, replica count and resource limits, the lab's
        budget (none), and the gateway's declared routes and health checks. Policies
        (lab.policies) stay: clear them with lab.policies.clear. Refused while a scale or
        deployment of any service runs."""
        require_up(self.backend)
        self._stop_control_loops()  # the declared stack has none; they would undo the heal
        with every_service(self.backend.state, SERVICES, "heal"):
            self._deployments.reset()
            self._deployments.budgets.set(budget.Budget())  # the topology declares none
            for svc in SERVICES.values():
                if self.backend.limits(svc) != svc.limits:
                    self.backend.set_limits(svc, svc.limits)
            self._faults.heal()
            self.gateway.write_routes()  # the declared routes and health checks

    # ---- traffic -----------------------------------------------------------

    def load(self, url: str, **options) -> pd.DataFrame:
        """Send load and return one row per request (see labkit.load.run_load).

        A URL on `<service>.localhost` goes through the gateway, as a browser
        or curl would send it, whatever the machine's resolver does with it.
        grpc://routeguide.localhost sends RouteGuide.GetFeature calls instead.
        HTTP requests carry a trace context sampled at the lab's rate (telemetry()), unless
        `trace_sample` says otherwise (None: no trace context, the gateway decides).
        """
        target, host = gateway_target(url)
        options.setdefault("host", host)
        if not target.startswith("grpc://"):
            # the lab's sampling, decided here for each request: every hop follows the
            # decision (labkit.telemetry_settings); gRPC calls are decided by the gateway
            options.setdefault("trace_sample",
                               telemetry_settings.load(self.backend.state).sample)
        check_load(target, **options)  # an unknown option too is a LabError, not a TypeError
        return run_load(target, **options)

    def grpc_channel(self, name: str, balancing: str = "round_robin") -> grpc.Channel:
        """A channel to a gRPC service. "round_robin" or "pick_first": the client resolves
        the instances from the registry and balances itself (following changes);
        "gateway": through Traefik, which balances each call."""
        svc = service(name)
        if svc.protocol != "grpc":
            grpc_services = [s.name for s in SERVICES.values() if s.protocol == "grpc"]
            raise LabError(f"{name} is not a gRPC service; gRPC services: "
                           f"{', '.join(grpc_services)}")
        choices = (*grpc_client.BALANCING, "gateway")
        if balancing not in choices:
            raise LabError(f"unknown balancing {balancing!r}; valid: {', '.join(choices)}")
        if balancing == "gateway":
            return grpc_client.gateway_channel(name)
        return grpc_client.registry_channel(name, balancing=balancing)

    def start_load(self, url: str, **options) -> Future[pd.DataFrame]:
        """Like load(), in the background and starting now: change the stack while traffic
        flows, then call .result() on the returned future for the DataFrame. Up to
        MAX_BACKGROUND_LOADS run at once; one more is refused with a LabError."""
        target, host = gateway_target(url)  # bad arguments are refused here, not from .result()
        check_load(target, **{"host": host, **options})
        return self._loads.submit(self.load, url, **options)

    def token(self, scopes: Sequence[str] | str, ttl: float | str = "5m",
              subject: str = "learner") -> str:
        """A signed token (a JWT) from the lab's auth service, for `subject`, granting
        `scopes` (e.g. ["echo:read"]; labkit.auth.scopes() lists them), valid for `ttl`
        (seconds or e.g. "5m", at most 24h). Send it as `Authorization: Bearer <token>` to a
        service that lab.policies.require(...)s a scope. labkit.tokens.claims(token) shows
        what it says."""
        check_request(scopes, ttl, subject)  # before asking whether the lab is up
        require_up(self.backend)
        return self._tokens.issue(scopes, ttl, subject)

    # ---- telemetry ---------------------------------------------------------

    def telemetry(self, sample: float | None = None,
                  keep_slower_than: float | str | None = None,
                  log_level: str | None = None) -> dict[str, float | str]:
        """The lab's telemetry settings, with the given ones changed live, end to end; returns
        those in force. `sample`: the share of requests traced, 0 to 1 (the decision is made
        where a request enters, by the load generator or the gateway, and every hop follows
        it: a trace is complete or absent). `keep_slower_than`: a duration; an untraced
        request that fails or takes longer is recorded anyway by the services it reached.
        `log_level`: debug, info, warning or error (successful requests log nothing: their
        span says it all). Every argument is checked before anything changes."""
        current = telemetry_settings.load(self.backend.state)
        wanted = current.changed(sample, keep_slower_than, log_level)
        if wanted != current:
            require_up(self.backend)
            with every_service(self.backend.state, SERVICES, "telemetry change"):
                telemetry_settings.apply(self.backend, self._admin, wanted, self.progress)
        return wanted.as_dict()

    def metrics(self, promql: str, start: When = None, end: When = None,
                step: float | str | None = None) -> pd.DataFrame:
        """A PromQL query as a tidy DataFrame (time, value, one column per label).

        Without `start`, an instant query at `end` (default now); with it, a range query.
        Times are unix seconds, datetimes, or "5m" meaning five minutes ago; `step` is
        seconds or "2s". The lab's recording rules (e.g. service:lab_errors:ratio_rate10s,
        version:lab_request_duration_seconds:p95_rate10s) are listed in `.lab/rules.yml`.
        """
        return self.prometheus.query(promql, start=start, end=end, step=step)

    def dashboard(self, window: str = "3m", refresh: float = 5.0,
                  live: bool | None = None) -> dict[str, pd.DataFrame]:
        """Request rate, error ratio and p95 latency per service and per instance over the
        last `window`, with links to Prometheus and Traefik's dashboard. Live (redrawn every
        `refresh` s for ten minutes) in a learner's Jupyter session; drawn once under
        papermill or CI. Returns the data drawn: panel title -> tidy frame."""
        from . import dashboard

        return dashboard.show(self.prometheus, window=window, refresh=refresh, live=live)

    def traces(self, service: str | None = None, since: When = None, until: When = None,
               min_duration: float | str | None = None, status: str | None = None,
               limit: int = 20) -> pd.DataFrame:
        """Traces in the telemetry store, newest first (see labkit.telemetry.Telemetry).
        `service`: one of the lab's, "traefik", or any application that exports to the store."""
        found = self.store.traces(service=service, since=since, until=until,
                                      min_duration=min_duration, status=status, limit=limit)
        if found.empty:
            self._has_telemetry(service)
        return found

    def trace(self, trace_id: str) -> pd.DataFrame:
        """The spans of one trace, one row each; lab.plot.trace(...) draws them."""
        return self.store.trace(trace_id)

    def spans(self, service: str, since: When = None, until: When = None,
              kind: str | None = None, limit: int = 1000) -> pd.DataFrame:
        """The spans of one service over a time window (see labkit.telemetry.Telemetry):
        `kind="SERVER"` gives each request its instances served, traced ones only: successes
        are in the traces, not in the logs."""
        return self.store.spans(service, since=since, until=until, kind=kind, limit=limit)

    def logs(self, request_id: str | None = None, service: str | None = None,
             instance: str | None = None, level: str | None = None, since: When = None,
             until: When = None, contains: str | None = None, trace_id: str | None = None,
             limit: int = 1000) -> pd.DataFrame:
        """Log records of every instance and of the gateway (service "traefik": its access
        log), oldest first, or of any application that exports to the store.
        level="warning" means warnings and worse."""
        found = self.store.logs(
            request_id=request_id, trace_id=trace_id, service=service,
            instance=instance, level=level, since=since, until=until, contains=contains,
            limit=limit,
        )
        if found.empty:
            self._has_telemetry(service)
        return found

    def _has_telemetry(self, name: str | None) -> None:
        """Nothing found: a LabError if that is because no service of that name ever sent
        anything (a typo), naming those that did."""
        if name is None or name in SERVICES or name == GATEWAY_SERVICE:
            return
        stored = self.store.services()
        if name not in stored:
            known = ", ".join(sorted({*SERVICES, GATEWAY_SERVICE, *stored}))
            raise LabError(f"the telemetry store holds nothing from a service {name!r}; "
                           f"services with telemetry: {known}")

    # ---- deployments ---------------------------------------------------------

    def versions(self, name: str) -> pd.DataFrame:
        """Per version of a service: instances running and registered, share of the traffic."""
        require_up(self.backend)
        return self._deployments.versions(name)

    def deploy(self, name: str, version: str, replicas: int) -> pd.DataFrame:
        """Run `replicas` instances of `version` beside the others (blue/green). With no split
        in force, traffic is pinned to the version serving now first: the new instances get
        none until `shift` sends them some. Returns `versions(name)`."""
        require_up(self.backend)
        return self._deployments.deploy(name, version, replicas)

    def shift(self, name: str, weights: dict[str, float] | str,
              to: str | None = None) -> dict[str, int] | None:
        """Split the traffic between versions: {"v1": 90, "v2": 10}; or a preset, "tenth",
        "half" or "full" of it to version `to`; or "off" to route to the whole fleet again.
        One etcd transaction, confirmed from Traefik's API before it returns."""
        require_up(self.backend)
        return self._deployments.shift(name, weights, to)

    def rollback(self, name: str) -> dict[str, int] | None:
        """Undo the last shift in one call (again to go one further back)."""
        require_up(self.backend)
        return self._deployments.rollback(name)

    def mirror(self, name: str, to: str | None, percent: int = 100) -> tuple[str, int] | None:
        """Copy `percent`% of the requests to version `to` (shadow traffic: its answers are
        dropped, clients get the usual ones); to=None stops. Shifts and rollouts are refused
        while mirroring."""
        require_up(self.backend)
        return self._deployments.mirror(name, to, percent)

    def canary(self, name: str, to: str, steps: Sequence[int] = (5, 25, 50, 100),
               interval: float = 15, slo: dict[str, float] | None = None,
               min_requests: int = 50) -> pd.DataFrame:
        """Shift to version `to` step by step (percent), judging each step after `interval`
        seconds of the caller's traffic from Prometheus: the canary's error ratio and p95
        against `slo` and against the version it replaces. Promotes at 100, or rolls back at
        the first failed step. Returns one row per step with the evidence and decision."""
        require_up(self.backend)
        return self._deployments.canary(name, to, list(steps), interval, slo, min_requests)

    def rollout(self, name: str, version: str, batch: int = 1, surge: int = 1,
                ready_timeout: float = 15) -> pd.DataFrame:
        """Rolling upgrade to `version`, `batch` instances at a time, with up to `surge` extra:
        new ones must be routed before old ones drain (deregister, finish, exit). Raises
        labkit.rollout.RolloutAborted (with `.report`) after rolling back if new instances
        are not routed within `ready_timeout` seconds. Returns one row per round."""
        require_up(self.backend)
        return self._deployments.rollout(name, version, batch, surge, ready_timeout)

    # ---- the course --------------------------------------------------------

    def check(self, exercise: str, **answers: object) -> exercises.Verdict:
        """Check a notebook's exercise ("05.3": notebook 05, its third) against the live lab:
        what the check measured and what is still missing, then the explained answer. A
        conceptual exercise gets its explained answer. Answers go as keywords, as the
        exercise asks: lab.check("05.1", failed=0.0)."""
        require_up(self.backend)
        return exercises.check(self, exercise, checks.catalogue(), **answers)


def gateway_target(url: str) -> tuple[str, str | None]:
    """Map http://<name>.localhost/... (or grpc://<name>.localhost) to the gateway's address
    plus a Host header (the authority, for gRPC)."""
    if not isinstance(url, str):
        raise LabError(f"a URL is a string such as 'http://echo.localhost/' or "
                       f"'grpc://routeguide.localhost', not {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "grpc") or not parts.hostname:
        raise LabError(f"not an HTTP or gRPC URL: {url!r} "
                       "(e.g. 'http://echo.localhost/' or 'grpc://routeguide.localhost')")
    if not parts.hostname.endswith(".localhost"):
        return url, None
    # https: the gateway's TLS entry point, with its certificate from the lab CA
    entry = infra().gateway_tls if parts.scheme == "https" else infra().gateway
    scheme = "grpc" if parts.scheme == "grpc" else parts.scheme
    gateway = urlunsplit((scheme, entry.address, parts.path or "/", parts.query, ""))
    return gateway, parts.hostname


def connect(start: bool = True) -> Lab:
    """A `Lab` for the running stack, starting it first when none runs."""
    lab = Lab()
    if start:
        lab.up()
    return lab
