"""The local backend: every component a process under supervisord, on loopback.

`up` starts supervisord with a generated config, then starts the components
in dependency order (etcd, routes, Prometheus and its discovery bridge,
Traefik, service instances) and waits until each one is healthy. `down`
shuts supervisord down, which stops every process it started, and reaps any
process of the stack left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import httpx
import psutil

from .. import (
    admin_token,
    block_claims,
    blocks,
    certs,
    limits,
    paths,
    privileges,
    processes,
    reuseport,
    servicelock,
)
from ..errors import LabError
from ..gateway import Gateway
from ..limits import Limits
from ..ports import ensure_free
from ..registry import Registry
from ..topology import INFRA_COMPONENTS, MAX_REPLICAS, SERVICES, Endpoint, Service, infra
from ..versions import ReleaseFiles
from ..waits import wait_for
from . import local_config
from .base import ORPHANED, Progress
from .local_config import infra_name, instance_name
from .supervisor import ACTIVE_STATES, FAILED_STATES, Supervisor


def health_url(component: str) -> str:
    at = infra()
    return {
        "etcd": f"{at.etcd.url}/health",
        "promsd": f"{at.promsd.url}/health",
        "prometheus": f"{at.prometheus.url}/-/ready",
        "telemetry": f"{at.telemetry.url}/health",
        "traefik": f"{at.traefik_api.url}/ping",
    }[component]


# starting, routing and dropping instances and components: 1-3 s on an idle machine; a hub's
# three labs starting beside the suite's three (6 labs, 2 cores) left echo registered but not
# yet routed after 20 s (v22), so the bound leaves room for that
START_TIMEOUT = 45.0
REPLICAS_FILE = "replicas.json"  # the replica count asked for each service (scale, or up)
LIMITS_FILE = "limits.json"  # the resource limits set on each service (lab.limits)
STOP_TIMEOUT = 15.0  # above supervisord's stopwaitsecs, after which it SIGKILLs


class LocalBackend:
    name = "local"

    def __init__(self, state: Path | None = None):
        self.state = state or paths.state_dir()
        self.supervisor = Supervisor(self.state / "supervisor.sock")
        # LABKIT_BLOCK if set, else the block this state folder's lab records (it may run),
        # else, for now, the first free one: `up` claims it, or the next free if another lab
        # took it meanwhile. Every client labkit makes talks to this process's block.
        fixed = blocks.from_environment()
        if fixed is None:
            fixed = blocks.recorded(self.state)
        self.block_is_fixed = fixed is not None
        self.block = block_claims.first_free() if fixed is None else fixed
        blocks.use(self.block)

    @cached_property
    def gateway(self) -> Gateway:
        return Gateway()

    @cached_property
    def registry(self) -> Registry:
        return Registry()

    def close(self) -> None:
        """Close the gateway's and the registry's HTTP clients (made again on next use)."""
        if "gateway" in self.__dict__:
            self.__dict__.pop("gateway").api.close()
        if "registry" in self.__dict__:
            self.__dict__.pop("registry").etcd.session.close()

    # ---- lifecycle -------------------------------------------------------

    def is_up(self) -> bool:
        return self.supervisor.is_running()

    def up(self, progress: Progress) -> None:
        """Start the whole stack; a no-op for components already running. A lab whose
        supervisord died is supervised again, without stopping it (see `_adopt`)."""
        if self.is_up():
            self._refuse_other_block()
            self._start_infra(progress)
            return
        local_config.infra_commands(self.state)  # every executable found, or fail before acting
        orphans = self.orphans()
        if orphans:
            self._refuse_other_block()
        claim = self._claim_block(adopting=bool(orphans))
        if orphans:
            self._adopt(orphans, claim, progress)
            return
        try:
            self._reap_strays()
            ensure_free(self._endpoints_needed())
        except BaseException:
            claim.release()
            raise
        try:
            self._start_supervisord(progress, claim, fresh=True)
            self._start_infra(progress)
            self._prepare_limits()
            launched = time.monotonic()
            initial = {s: list(range(1, s.replicas + 1)) for s in SERVICES.values()}
            for service, slots in initial.items():
                self._launch(service, slots)
            for service, slots in initial.items():
                self._wait_started(service, slots, launched, progress)
            self._limit_started_instances()
        except BaseException:
            # nothing half-way: a failed start leaves nothing running
            self.down(lambda _msg: None)
            raise

    def _refuse_other_block(self) -> None:
        running = blocks.recorded(self.state)
        if running is not None and running != self.block:
            raise LabError(f"the lab in {self.state} runs on block {running}, but "
                           f"{blocks.BLOCK_ENV} asks for {self.block}: 'labkit down' first, "
                           f"or unset {blocks.BLOCK_ENV}")

    def _adopt(self, orphans: list[dict], claim: block_claims.Claim,
               progress: Progress) -> None:
        """Supervise a lab whose supervisord died: a new supervisord (holding the block
        again), then each orphan replaced by a supervised process, so that the lab keeps
        serving. The components off the request path restart together; Traefik's successor
        starts beside it (its entry points reuse the port) before it leaves; each service
        replaces one instance at a time, which leaves the gateway and stops gracefully before
        its successor starts on its address (the only instance of a version gets a stand-in
        on a spare slot meanwhile). Registrations, routes, policies and stored data stay: the state
        folder is kept."""
        progress(f"supervisord is gone; {len(orphans)} component(s) still run: supervising "
                 "them again")
        self._start_supervisord(progress, claim, fresh=False)
        pids = {o["name"]: o["pid"] for o in orphans}
        behind = [c for c in INFRA_COMPONENTS if c != "traefik"]  # etcd first
        with ThreadPoolExecutor(len(behind)) as pool:
            list(pool.map(_stop_orphan, [pids[c] for c in (*behind, local_config.CERTS_PROGRAM)
                                         if c in pids]))
        self._start_components(behind[:1], progress)
        self._start_components(behind[1:], progress)
        if "traefik" in pids:
            self._send_new_connections_to(reuseport.FIRST)  # the orphan, while its successor starts
        self.supervisor.start(infra_name("traefik"))
        if "traefik" in pids:
            # the successor has its routes once supervisord calls it RUNNING (alive for
            # `startsecs`); then it takes new connections, and the orphan finishes what it has
            wait_for(lambda: self.supervisor.info(infra_name("traefik"))["statename"]
                     == "RUNNING", what="the new traefik to run", timeout=START_TIMEOUT,
                     diagnose=lambda: self.describe(infra_name("traefik"), "traefik"))
            self._send_new_connections_to(reuseport.SECOND)
            _stop_orphan(pids["traefik"])
        self._wait_healthy("traefik")
        self.supervisor.start(infra_name(local_config.CERTS_PROGRAM))
        progress("infrastructure supervised again")
        with ThreadPoolExecutor(len(SERVICES)) as pool:
            list(pool.map(lambda svc: self._adopt_instances(svc, pids, progress),
                          SERVICES.values()))

    def _adopt_instances(self, service: Service, pids: dict[str, int],
                         progress: Progress) -> None:
        slots = range(1, MAX_REPLICAS + 1)
        orphans = {s: pids[service.instance_id(s)] for s in slots if service.instance_id(s) in pids}
        wanted = set(range(1, self.desired_replicas(service) + 1)) | set(orphans)
        releases = ReleaseFiles(self)
        # those that died unsupervised first: replacing an orphan takes it out of rotation,
        # and one instance left serving fails every request while a health check of it times
        # out on busy cores (a 0.5 s burst of 503s in 2 of 3 full suites)
        self.start_instances(service, sorted(wanted - set(orphans)), progress)
        for slot in sorted(orphans):
            version = releases.version(service, slot)
            spare = None
            if not [s for s in wanted - {slot} if releases.version(service, s) == version]:
                spare = min(set(slots) - wanted)
                releases.assign(service, spare, version)
                self.start_instances(service, [spare], progress)
            self._unroute(service, [slot])
            _stop_orphan(orphans[slot])  # gone: its addresses are free
            self.start_instances(service, [slot], progress)
            if spare is not None:
                self.stop_instances(service, [spare], progress)
                releases.release_slot(service, spare)

    def _unroute(self, service: Service, slots: list[int]) -> None:
        """Make instances unready (their admin API) and wait until the gateway dropped them,
        before they are stopped: their own drain on SIGTERM (0.3 s) is shorter than Traefik
        takes on busy cores (a rollout under parallel labs lost 3 to 32 requests to it)."""
        gone = set()
        for slot in slots:
            try:
                httpx.put(f"{service.admin_endpoint(slot).url}/admin/faults",
                          json={"unready": True}, headers=admin_token.headers(self.state),
                          timeout=2).raise_for_status()
            except httpx.HTTPError:
                continue  # it does not answer (paused, hung): it is stopped as it is
            gone.add(_server_address(service, slot))
        wait_for(lambda: not gone & _addresses(self.gateway.servers(service.name)),
                 what=f"the gateway to drop {sorted(gone)}", timeout=START_TIMEOUT)

    def _claim_block(self, adopting: bool) -> block_claims.Claim:
        if self.block_is_fixed:
            return block_claims.claim(self.block, self.state)
        # orphans to adopt listen on the block's addresses themselves
        claim = (block_claims.try_claim if adopting else block_claims.try_claim_unused)(
            self.block, self.state)
        if claim is None:  # another lab (or a stranger) took it since this backend chose it
            claim = block_claims.claim_first_free(self.state)
            self.block = claim.block
            blocks.use(self.block)
            self.close()  # the clients of the old block
        return claim

    def down(self, progress: Progress) -> None:
        if self.is_up():
            pid = self.supervisor.pid()
            progress("stopping every process of the stack")
            self._stop_everything()
            self.supervisor.shutdown()
            if not processes.wait_gone(pid, timeout=20):
                progress(f"supervisord (pid {pid}) did not exit in time; killing it")
                processes.kill_tree(pid)
        reaped = self._reap_strays()
        if reaped:
            progress(f"reaped {reaped} leftover process(es)")
        for leftover in ("supervisor.sock", "supervisord.pid"):
            (self.state / leftover).unlink(missing_ok=True)
        self._remove_limit_groups()
        blocks.forget(self.state)

    def _stop_everything(self) -> None:
        """Instances first (they deregister while etcd still runs), then the infrastructure.

        Each step signals all of its processes at once: supervisord's own shutdown
        stops them one group after another, which takes seconds.
        """
        for group in SERVICES:
            self.supervisor.stop_group(group)
        self._wait_stopped(set(SERVICES))
        self.supervisor.stop_all()
        self._wait_stopped(set(SERVICES) | set(INFRA_COMPONENTS))

    def _wait_stopped(self, groups: set[str]) -> None:
        wait_for(
            lambda: not any(p["group"] in groups and p["statename"] in ACTIVE_STATES
                            for p in self.supervisor.processes()),
            what=f"{', '.join(sorted(groups))} to stop", timeout=STOP_TIMEOUT,
        )

    def _endpoints_needed(self) -> list[tuple[str, Endpoint]]:
        needed = list(infra().named().items())
        for service in SERVICES.values():
            needed += instance_endpoints(service, range(1, service.replicas + 1))
        return needed

    def _start_supervisord(self, progress: Progress, claim: block_claims.Claim,
                           fresh: bool) -> None:
        """Start supervisord, which inherits the block's claim and holds it while it lives.
        `fresh`: empty the previous run's data first (not when supervising a running lab)."""
        progress(f"block {self.block}: writing configuration to {self.state}")
        # the registry is rebuilt from live instances (stale records would lie); so are the
        # metrics (after a restart Prometheus writes no staleness markers, so the last values
        # of a previous run's recorded series would count for 5 minutes), and the logs and
        # traces, so that what a learner sees is this run only
        if fresh:
            self._remove_limit_groups()  # a crashed run's, before its record goes
        for stale in ("etcd", "prometheus", "logs", "faults", "releases", "limits", "telemetry",
                      local_config.SUPERVISORD_LOG, REPLICAS_FILE, LIMITS_FILE) if fresh else ():
            path = self.state / stale
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        # the lab's files are its user's alone: no other user may read or drive it (when
        # root, its programs run as an unprivileged user: labkit.privileges)
        user = privileges.service_user()
        privileges.check_reachable(user, [self.state.parent, paths.REPO, paths.BIN])
        privileges.lock_state(self.state, user)
        if fresh:  # a new lab CA: nothing an earlier run signed is trusted
            certs.prepare(self.state, user)
        local_config.write_all(self.state, user)
        if fresh or not admin_token.path(self.state).exists():
            admin_token.make(self.state, user)
        blocks.record(self.state, self.block)
        progress("starting supervisord")
        conf = self.state / "supervisord.conf"
        try:
            result = subprocess.run(
                [paths.executable("supervisord"), "-c", str(conf)], pass_fds=(claim.fd,),
                capture_output=True, text=True, timeout=30, check=False,
            )
        finally:
            claim.release()  # supervisord holds it now (or, if it failed, nobody)
        if result.returncode != 0:
            raise LabError(f"supervisord failed to start:\n{result.stdout}{result.stderr}")
        wait_for(
            self.supervisor.is_running, what="supervisord's control socket", timeout=10,
            diagnose=lambda: self.log_tail("supervisord"),
        )
        block_claims.note_holder(self.block, self.state, self.supervisor.pid())

    def _start_infra(self, progress: Progress) -> None:
        """etcd first (everything else reads it), then the rest together."""
        states = {p["name"]: p["statename"] for p in self.supervisor.processes()}
        missing = [c for c in INFRA_COMPONENTS if states.get(c) != "RUNNING"]
        if "etcd" in missing:
            self._start_components(["etcd"], progress)
            # Traefik backs off for seconds if its prefix is empty when it starts
            self.gateway.write_routes()
            certs.publish(self.state, certs.generation(self.state))
        self._start_components([c for c in missing if c != "etcd"], progress)
        if states.get(local_config.CERTS_PROGRAM) != "RUNNING":
            self.supervisor.start(infra_name(local_config.CERTS_PROGRAM))

    def _start_components(self, components: list[str], progress: Progress) -> None:
        started = time.monotonic()
        for component in components:
            self.supervisor.start(infra_name(component))
        for component in components:
            self._wait_healthy(component)
            progress(f"{component} healthy ({time.monotonic() - started:.1f} s)")

    def reload_gateway(self, progress: Progress) -> None:
        """Regenerate Traefik's static configuration and restart it on it, without a gap: a
        stand-in on the new configuration serves beside it (their entry points reuse the
        port) from when it has every route until the restarted one has them too; new
        connections go to the one that serves (labkit.reuseport)."""
        local_config.write_traefik_static(self.state)
        self._send_new_connections_to(reuseport.FIRST)
        command = [paths.executable("traefik"),
                   f"--configFile={self.state / 'traefik-standin.yml'}"]
        # the lab's marker (not a program's): `down` reaps it should this call die midway
        user = privileges.service_user()  # as the supervised Traefik runs
        stand_in = subprocess.Popen(
            local_config.logged_command(command, self.log_path("traefik-standin")),
            env={**os.environ, **local_config.TRAEFIK_ENV, local_config.STATE_ENV: str(self.state)},
            start_new_session=True, **privileges.run_as(user))
        expected = _router_names(infra().traefik_api.url) or set()
        try:
            self._wait_routers(infra().traefik_standin_api.url, expected, "the stand-in gateway",
                               stand_in)
            self._send_new_connections_to(reuseport.SECOND)
            self.supervisor.stop(infra_name("traefik"), wait=True)
            self._send_new_connections_to(reuseport.FIRST)  # the stand-in, now alone
            self.supervisor.start(infra_name("traefik"))
            self._wait_routers(infra().traefik_api.url, expected, "the restarted gateway",
                               stand_in)
            self._send_new_connections_to(reuseport.SECOND)
            # and supervised again (RUNNING after `startsecs`), as status() will show it
            wait_for(lambda: self.supervisor.info(infra_name("traefik"))["statename"]
                     == "RUNNING", what="supervisord to call the restarted gateway RUNNING",
                     timeout=START_TIMEOUT,
                     diagnose=lambda: self.describe(infra_name("traefik"), "traefik"))
        finally:
            processes.stop_child(stand_in, grace=STOP_TIMEOUT)
        progress("gateway restarted on its new configuration, without a gap")

    @staticmethod
    def _send_new_connections_to(place: int) -> None:
        """Of two Traefiks on the gateway's ports, to the one at `place` (labkit.reuseport)."""
        user = privileges.service_user()  # Traefik's, when labkit is root
        for endpoint in (infra().gateway, infra().gateway_tls):
            reuseport.send_new_connections_to(endpoint, place, user.uid if user else None)

    def _wait_routers(self, api: str, expected: set[str], what: str,
                      stand_in: subprocess.Popen) -> None:
        """Until the Traefik at `api` serves every router in `expected` (Traefik applies a
        provider's configuration at once: its routers there, their services are too)."""
        def serving() -> bool:
            if stand_in.poll() is not None:
                raise LabError(f"the stand-in gateway exited ({stand_in.returncode}):\n"
                               + self.log_tail("traefik-standin"))
            found = _router_names(api)
            return found is not None and expected <= found

        wait_for(serving, what=f"{what} to serve every route", timeout=START_TIMEOUT,
                 diagnose=lambda: self.log_tail("traefik-standin") + "\n"
                 + self.log_tail("traefik"))

    def _wait_healthy(self, component: str) -> None:
        url = health_url(component)

        def healthy() -> bool:
            self._fail_if_crashed(infra_name(component), component)
            return httpx.get(url, timeout=1).status_code == 200

        wait_for(
            healthy, what=f"{component} to answer {url}", timeout=START_TIMEOUT,
            diagnose=lambda: self.describe(infra_name(component), component),
            hint=f"see {self.state / 'logs' / (component + '.log')}",
        )

    # ---- instances -------------------------------------------------------

    def ensure_free(self, service: Service, slots: list[int]) -> None:
        ensure_free(instance_endpoints(service, slots))

    def active_slots(self, service: Service) -> list[int]:
        slots = []
        for proc in self.supervisor.processes():
            if proc["group"] == service.name and proc["statename"] in ACTIVE_STATES:
                slots.append(int(proc["name"].rsplit("-", 1)[1]))
        return sorted(slots)

    def start_instances(self, service: Service, slots: list[int], progress: Progress,
                        timeout: float = START_TIMEOUT) -> None:
        started = time.monotonic()
        self._launch(service, slots)
        self._wait_started(service, slots, started, progress, timeout)

    def _launch(self, service: Service, slots: list[int]) -> None:
        for slot in slots:
            self.supervisor.start(instance_name(service, slot))

    def _wait_started(
        self, service: Service, slots: list[int], since: float, progress: Progress,
        timeout: float = START_TIMEOUT,
    ) -> None:
        if not slots:
            return
        self.wait_routed(service, slots, timeout)
        names = ", ".join(f"{service.name}-{s}" for s in slots)
        progress(f"{names} registered and routed ({time.monotonic() - since:.1f} s)")

    def stop_instances(self, service: Service, slots: list[int], progress: Progress) -> None:
        self._unroute(service, slots)
        for slot in slots:
            self.supervisor.stop(instance_name(service, slot))
        gone = {_server_address(service, slot) for slot in slots}
        wait_for(
            lambda: not gone & _addresses(self.gateway.servers(service.name)),
            what=f"the gateway to drop {sorted(gone)}", timeout=START_TIMEOUT,
        )
        # then let them drain and exit, so that no caller sees a half-stopped instance
        wait_for(
            lambda: not set(slots) & set(self.active_slots(service)),
            what=f"{service.name} instances {slots} to exit", timeout=STOP_TIMEOUT,
        )
        if slots:
            progress(f"stopped {', '.join(f'{service.name}-{s}' for s in slots)}")

    def wait_routed(self, service: Service, slots: list[int],
                    timeout: float = START_TIMEOUT) -> None:
        """Wait until each instance is registered (by its current pid) and in Traefik's view."""
        def all_routed() -> bool:
            registered = {(r["slot"], r["pid"]) for r in self.registry.records(service.name)}
            routed = _addresses(self.gateway.servers(service.name))
            for slot in slots:
                name = instance_name(service, slot)
                info = self._fail_if_crashed(name, f"{service.name}-{slot}")
                if (
                    (slot, info["pid"]) not in registered
                    or _server_address(service, slot) not in routed
                    # supervisord calls a process RUNNING once it has lived `startsecs`
                    or info["statename"] != "RUNNING"
                ):
                    return False
            return True

        wait_for(
            all_routed, what=f"{service.name} instances {slots} to register and be routed",
            timeout=timeout,
            diagnose=lambda: "\n".join(
                self.describe(instance_name(service, s), f"{service.name}-{s}") for s in slots
            ),
            hint="an instance registers once it listens; check its log for an exception",
        )

    def signal_instance(self, service: Service, slot: int, signal_name: str) -> None:
        self.supervisor.signal(instance_name(service, slot), signal_name)

    def crash_instance(self, service: Service, slot: int, restart: bool) -> None:
        name = instance_name(service, slot)
        if restart:
            self.supervisor.signal(name, "KILL")  # autorestart brings it back
        else:
            self.supervisor.kill_and_hold(name)

    def restart_instance(self, service: Service, slot: int) -> None:
        name = instance_name(service, slot)
        self.supervisor.stop(name, wait=True)
        self.supervisor.start(name)

    def desired_replicas(self, service: Service) -> int:
        return self._declared_replicas().get(service.name, service.replicas)

    def set_desired_replicas(self, service: Service, replicas: int) -> None:
        """One service's count changes, the others' stay: a read-modify-write of the file
        under its lock (two services scaled at once), written whole (temporary + rename)."""
        path = self.state / REPLICAS_FILE
        with servicelock.updating(path):
            desired = self._declared_replicas()
            desired[service.name] = replicas
            servicelock.write_atomically(path, json.dumps(desired, indent=2))

    def _declared_replicas(self) -> dict[str, int]:
        path = self.state / REPLICAS_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def limits(self, service: Service) -> Limits:
        path = self.state / LIMITS_FILE
        saved = json.loads(path.read_text()).get(service.name) if path.exists() else None
        return service.limits if saved is None else Limits(**saved)

    def set_limits(self, service: Service, wanted: Limits) -> None:
        """Every instance slot gets `wanted`: the running ones now, any other at its start
        (the file its start command sources); none changes if one cannot take it."""
        pids = {slot: self.instance_pid(service, slot) for slot in self.active_slots(service)}
        self._record_limit_groups()
        limits.check_fits(wanted, {service.instance_id(slot): limits.rss_mb(pid)
                                   for slot, pid in pids.items()})
        for slot in range(1, MAX_REPLICAS + 1):
            lines = limits.enforce(wanted, self.block, service.instance_id(slot), pids.get(slot))
            path = local_config.limits_file(self.state, service, slot)
            if lines:
                path.parent.mkdir(exist_ok=True)
                servicelock.write_atomically(path, lines)
            else:
                path.unlink(missing_ok=True)
        path = self.state / LIMITS_FILE
        with servicelock.updating(path):
            saved = json.loads(path.read_text()) if path.exists() else {}
            saved[service.name] = wanted.as_dict()
            servicelock.write_atomically(path, json.dumps(saved, indent=2))

    def _prepare_limits(self) -> None:
        """Where cgroups are usable every instance starts in its own group, unlimited until
        lab.limits: a limit set later then counts all the memory it holds (on recent kernels
        what a process holds stays charged to the group it was in when it moves)."""
        if limits.mechanism() == "cgroup v1":
            for service in SERVICES.values():
                self.set_limits(service, self.limits(service))

    def _limit_started_instances(self) -> None:
        """The address-space fallback sizes a limit from the running process: there the
        topology's limits apply once the instances run (cgroups: before, _prepare_limits)."""
        if limits.mechanism() == "rlimit":
            for service in SERVICES.values():
                if declared := self.limits(service):
                    self.set_limits(service, declared)

    def _record_limit_groups(self) -> None:
        """Where this process makes the lab's cgroups (below its own groups): `down`, maybe
        from another process in other groups, removes them from this record."""
        record = self.state / "limits" / "cgroups"
        record.parent.mkdir(exist_ok=True)
        known = set(record.read_text().split("\n")) if record.exists() else set()
        paths = {str(p) for p in limits.lab_groups(self.block)} - known
        if paths and limits.mechanism() == "cgroup v1":
            with record.open("a") as out:
                out.writelines(f"{p}\n" for p in sorted(paths))

    def _remove_limit_groups(self) -> None:
        record = self.state / "limits" / "cgroups"
        if record.exists():
            limits.remove_groups(Path(line) for line in record.read_text().split())

    def instance_pid(self, service: Service, slot: int) -> int:
        return self.supervisor.info(instance_name(service, slot))["pid"]

    def is_paused(self, service: Service, slot: int) -> bool:
        try:
            return psutil.Process(self.instance_pid(service, slot)).status() == "stopped"
        except psutil.Error:
            return False

    def faults_file(self, service: Service, slot: int) -> Path:
        return local_config.faults_file(self.state, service, slot)

    def release_file(self, service: Service, slot: int) -> Path:
        return local_config.release_file(self.state, service, slot)

    # ---- status and diagnostics -----------------------------------------

    def processes(self) -> list[dict]:
        return self.supervisor.processes() if self.is_up() else self.orphans()

    def orphans(self) -> list[dict]:
        """The lab's processes still running after their supervisord died (state ORPHANED,
        in supervisord's shape): they serve on, but nothing restarts them. None while
        supervisord runs."""
        if self.is_up():
            return []
        found = []
        for proc in self._stack_processes():
            try:
                name = proc.environ().get(local_config.PROGRAM_ENV)
                started = proc.create_time()
            except psutil.Error:
                continue
            if name is not None:
                found.append({"name": name, "group": name if name in INFRA_COMPONENTS
                              else name.rsplit("-", 1)[0], "statename": ORPHANED,
                              "pid": proc.pid, "start": started,
                              "description": "its supervisord is gone"})
        return sorted(found, key=lambda p: p["name"])

    def log_path(self, program: str) -> Path:
        if program == "supervisord":
            return self.state / local_config.SUPERVISORD_LOG
        return self.state / "logs" / f"{program}.log"

    def log_tail(self, program: str, lines: int = 20) -> str:
        path = self.log_path(program)
        if not path.exists():
            return f"(no log at {path})"
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        return f"last {len(tail)} lines of {path}:\n" + "\n".join("  " + t for t in tail)

    def describe(self, name: str, program: str) -> str:
        info = self.supervisor.info(name)
        return f"{program}: {info['statename']} ({info['description']})\n" + self.log_tail(program)

    def _fail_if_crashed(self, name: str, program: str) -> dict:
        info = self.supervisor.info(name)
        if info["statename"] in FAILED_STATES:
            raise LabError(f"{program} failed to start: {info['statename']}\n"
                           + self.log_tail(program))
        return info

    def _stack_processes(self) -> list[psutil.Process]:
        """Every process started for this state folder's lab (by its STATE_ENV marker)."""
        found = []
        me = os.getpid()
        for proc in psutil.process_iter(["pid"]):
            if proc.pid == me:
                continue
            try:
                if proc.environ().get(local_config.STATE_ENV) == str(self.state):
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def _reap_strays(self) -> int:
        """Kill processes of this stack that outlived their supervisord (e.g. after a crash),
        and wait until they are gone: their addresses are free afterwards."""
        strays = self._stack_processes()
        for proc in strays:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _, alive = psutil.wait_procs(strays, timeout=STOP_TIMEOUT)
        if alive:
            raise LabError(f"processes {[p.pid for p in alive]} of the lab in {self.state} "
                           f"survived SIGKILL for {STOP_TIMEOUT:g} s")
        return len(strays)


def instance_endpoints(service: Service, slots: Iterable[int]) -> list[tuple[str, Endpoint]]:
    """(what, endpoint) for every address the given instances bind."""
    return [
        (f"{service.name}-{slot}{purpose}", endpoint)
        for slot in slots
        for purpose, endpoint in service.endpoints(slot).items()
    ]


def _server_address(service: Service, slot: int) -> str:
    return service.endpoint(slot).address


def _addresses(server_urls: Iterable[str]) -> set[str]:
    """The addresses of the gateway's servers, whatever their scheme (http or https: on
    mTLS, see labkit.security)."""
    return {url.split("://", 1)[-1] for url in server_urls}


def _router_names(api: str) -> set[str] | None:
    """The routers a Traefik serves, from its API; None while it does not answer."""
    try:
        answer = httpx.get(f"{api}/api/http/routers", params={"per_page": 1000}, timeout=1)
    except httpx.HTTPError:
        return None
    return {r["name"] for r in answer.json()} if answer.status_code == 200 else None


def _stop_orphan(pid: int) -> None:
    processes.stop(pid, grace=STOP_TIMEOUT)
