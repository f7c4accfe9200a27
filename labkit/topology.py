"""The one description of the stack: services, ports, replicas, versions.

Every generated configuration (supervisord, Traefik, Prometheus) and every
labkit call reads from here, so the local and compose backends cannot drift.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from functools import cache

from . import blocks
from .errors import LabError
from .limits import Limits

MAX_REPLICAS = 10
LEASE_TTL_SECONDS = 3


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@dataclass(frozen=True)
class Release:
    """One version of a service. Every version runs the same code; what differs reaches the
    instance as LAB_* variables (see `environment`), so a version is visible in its answers."""

    version: str
    text: str = "hello"  # echo's "text" field
    ready: bool = True  # False: a bad build whose readiness check never passes
    about: str = ""

    def environment(self) -> dict[str, str]:
        env = {"LAB_VERSION": self.version, "LAB_TEXT": self.text}
        if not self.ready:
            env["LAB_NEVER_READY"] = "1"
        return env


# v1 is what `up` runs; v2 a good new release; v3 a broken one, to practise aborting.
RELEASES = (
    Release("v1", about="the declared version, running at `up` (blue)"),
    Release("v2", text="hello from v2", about="a new release that answers differently (green)"),
    Release("v3", text="hello from v3", ready=False,
            about="a bad build: alive, but its readiness check never passes"),
)


@dataclass(frozen=True)
class Service:
    """An application service: each instance gets its own loopback address."""

    name: str
    module: str  # run as `python -m <module>`
    protocol: str  # "http" or "grpc"
    port: int
    subnet: int  # instances live on 127.0.<subnet>.<slot>
    replicas: int  # declared replica count at `up`
    version: str = "v1"  # the declared version: every slot runs it unless labkit says otherwise
    releases: tuple[Release, ...] = RELEASES
    metrics_port: int | None = None  # gRPC services expose /metrics on a side port
    admin_offset: int = 10000  # the fault-injection API listens on port + offset, never routed
    # enforced on every instance from `up` on and restored by heal (labkit.limits), like a
    # Kubernetes container's resources.limits; lab.limits changes them live
    limits: Limits = Limits()

    def instance_id(self, slot: int) -> str:
        """How instance `slot` is named everywhere: "echo-2"."""
        return f"{self.name}-{slot}"

    @property
    def host_rule(self) -> str:
        return f"{self.name}.localhost"

    def endpoint(self, slot: int, block: int | None = None) -> Endpoint:
        """Where instance `slot` listens: 127.<block>.<subnet>.<slot> (see `place`)."""
        return place(self.port, self.subnet, slot, block)

    def metrics_endpoint(self, slot: int, block: int | None = None) -> Endpoint:
        main = self.endpoint(slot, block)
        if self.metrics_port is None:
            return main
        return Endpoint(main.host, self.metrics_port + main.port - self.port)

    def admin_endpoint(self, slot: int, block: int | None = None) -> Endpoint:
        main = self.endpoint(slot, block)
        return Endpoint(main.host, main.port + self.admin_offset)

    def endpoints(self, slot: int, block: int | None = None) -> dict[str, Endpoint]:
        """Every address instance `slot` binds, by purpose (to check they are free)."""
        return {
            "": self.endpoint(slot, block),
            " admin": self.admin_endpoint(slot, block),
            " metrics": self.metrics_endpoint(slot, block),
        }

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(r.version for r in self.releases)

    def release(self, version: object) -> Release:
        """The release called `version`, or an error naming the service's versions."""
        for release in self.releases:
            if release.version == version:
                return release
        raise LabError(f"{self.name} has no version {version!r}; "
                       f"its versions: {', '.join(self.versions)}")

    def version_service(self, version: str) -> str:
        """The gateway's load balancer over this version's instances only."""
        return f"{self.name}-{version}"


@dataclass(frozen=True)
class Infra:
    """Addresses of the infrastructure components of one lab (all on 127.<block>.0.1)."""

    etcd: Endpoint
    etcd_peer: Endpoint
    gateway: Endpoint
    gateway_tls: Endpoint  # HTTPS, with a certificate from the lab CA (labkit.certs)
    traefik_api: Endpoint
    traefik_standin_api: Endpoint  # a second Traefik's, while it replaces the first (reload)
    promsd: Endpoint
    prometheus: Endpoint
    telemetry: Endpoint

    def named(self) -> dict[str, Endpoint]:
        """Every address the infrastructure binds, by what binds it (to check they are free)."""
        return {
            "etcd": self.etcd, "etcd peer": self.etcd_peer, "promsd": self.promsd,
            "prometheus": self.prometheus, "telemetry": self.telemetry,
            "traefik web": self.gateway, "traefik websecure": self.gateway_tls,
            "traefik api": self.traefik_api,
            "traefik stand-in api": self.traefik_standin_api,
        }


INFRA_PORTS = {
    "etcd": 2379, "etcd_peer": 2380, "gateway": 8000, "traefik_api": 8081, "promsd": 8082,
    "gateway_tls": 8443,
    "traefik_standin_api": 8083,
    # 9095, not 9090: a system Prometheus installed by the OS package may hold 9090
    "prometheus": 9095,
    # the standard OTLP/HTTP port: services and Traefik export traces and logs here
    "telemetry": 4318,
}
# Without loopback aliases (stock macOS) every lab shares 127.0.0.1: lab k shifts each port
# by k * FALLBACK_STRIDE; a unit test checks that blocks 0..FALLBACK_BLOCKS-1 never overlap.
FALLBACK_STRIDE = 11
FALLBACK_BLOCKS = 8


def place(port: int, subnet: int = 0, slot: int = 1, block: int | None = None) -> Endpoint:
    """The address of slot `slot` in subnet `subnet` of a lab's block (subnet 0 holds the
    infrastructure): 127.<block>.<subnet>.<slot>, or a distinct port on 127.0.0.1."""
    k = blocks.current() if block is None else block
    if loopback_aliases_work():
        return Endpoint(f"127.{k}.{subnet}.{slot}", port)
    if k >= FALLBACK_BLOCKS:
        raise LabError(f"only 127.0.0.1 is bindable here (no loopback aliases), where labs "
                       f"share one address: blocks 0 to {FALLBACK_BLOCKS - 1} exist, not {k}")
    return Endpoint("127.0.0.1", port + (100 * slot if subnet else 0) + FALLBACK_STRIDE * k)


def infra(block: int | None = None) -> Infra:
    """The infrastructure's addresses in `block` (default: this process's lab)."""
    return Infra(**{name: place(port, block=block) for name, port in INFRA_PORTS.items()})


@dataclass(frozen=True)
class RecordingRules:
    """Prometheus's recording rules (generated into `.lab/rules.yml`): rates over a
    `window_s` window, evaluated every `evaluation_s` (also the scrape interval).

    The window is part of every recorded name ("version:lab_requests:rate10s"), and the
    notebooks query those names: keep 10 s unless they change too.
    """

    window_s: int = 10
    evaluation_s: int = 2

    @property
    def rate(self) -> str:
        """The suffix of every recorded rate: "rate10s"."""
        return f"rate{self.window_s}s"

    def record(self, level: str, metric: str, aggregation: str = "") -> str:
        """A recorded series' name: record("version", "lab_errors", "ratio_") ->
        "version:lab_errors:ratio_rate10s" (level:metric:operations, Prometheus's convention)."""
        return f"{level}:{metric}:{aggregation}{self.rate}"


SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        Service("echo", "labstack.echo", "http", port=8080, subnet=1, replicas=3),
        Service("web", "labstack.web", "http", port=8090, subnet=2, replicas=1),
        Service(
            "routeguide", "labstack.routeguide", "grpc", port=50051, subnet=3, replicas=2,
            metrics_port=9100,
        ),
        # issues and verifies tokens for the gateway (labkit.auth); no lesson scales it
        Service("auth", "labstack.auth", "http", port=8070, subnet=4, replicas=1),
    )
}
RULES = RecordingRules()
INFRA_COMPONENTS = ("etcd", "promsd", "prometheus", "telemetry", "traefik")


def service(name: str) -> Service:
    """The service called `name`, or an error naming the known ones."""
    try:
        return SERVICES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(SERVICES))
        raise LabError(f"unknown service {name!r}; known services: {known}") from None


def check_replicas(n: object) -> int:
    """A replica count in 0..MAX_REPLICAS, or an error saying what is valid."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise LabError(f"replica count must be a whole number, got {n!r}")
    if not 0 <= n <= MAX_REPLICAS:
        raise LabError(f"replica count must be between 0 and {MAX_REPLICAS}, got {n}")
    return n


def check_instance(svc: Service, n: object) -> int:
    """An instance number (a slot) of `svc`, 1..MAX_REPLICAS, or an error saying what is valid."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_REPLICAS:
        raise LabError(f"{svc.name}'s instance numbers are whole numbers from 1 to "
                       f"{MAX_REPLICAS} (echo-2 is instance 2), got {n!r}")
    return n


@cache
def loopback_aliases_work() -> bool:
    """Linux routes all of 127.0.0.0/8 to lo; macOS only has 127.0.0.1 without aliases."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.1.254", 0))
        except OSError:
            return False
    return True
