"""Generate the local stack's configuration files, each in its component's own format.

supervisord gets an INI file, Traefik and Prometheus get YAML: a learner can
open `.lab/` and recognise what the components' documentation shows.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import yaml

from .. import admin_token, auth, certs, keyspace, links, paths, telemetry_settings
from ..durations import go
from ..privileges import User, private_folder
from ..topology import LEASE_TTL_SECONDS, MAX_REPLICAS, RULES, SERVICES, Service, infra

STATE_ENV = "LABKIT_STACK"  # inherited by every process of the stack, so `down` can find strays
PROGRAM_ENV = "LABKIT_PROGRAM"  # each process's program ("traefik", "echo-2"), to name orphans
SUPERVISORD_LOG = "supervisord.log"  # in the state folder, root's: not among the programs' logs
# the folders the programs write (run as another user when labkit is root: see labkit.privileges)
PROGRAM_FOLDERS = ("logs", "etcd", "prometheus", "telemetry", auth.SERVICE)


def program_name(service: Service, slot: int) -> str:
    return service.instance_id(slot)


def infra_name(component: str) -> str:
    """The name supervisord's XML-RPC API uses for an infrastructure program."""
    return f"{component}:{component}"


def instance_name(service: Service, slot: int) -> str:
    return f"{service.name}:{program_name(service, slot)}"


def infra_commands(state: Path) -> dict[str, list[str]]:
    etcd, peer = infra().etcd, infra().etcd_peer
    return {
        "etcd": [
            paths.executable("etcd"), "--name", "lab", "--data-dir", str(state / "etcd"),
            "--listen-client-urls", etcd.url, "--advertise-client-urls", etcd.url,
            "--listen-peer-urls", peer.url, "--initial-advertise-peer-urls", peer.url,
            "--initial-cluster", f"lab={peer.url}",
            # the registry is rebuilt at every `up`: durability buys nothing here
            "--unsafe-no-fsync", "--log-level", "warn",
        ],
        "promsd": [sys.executable, "-m", "labstack.promsd"],
        "telemetry": [
            sys.executable, "-m", "labstack.telemetry",
            "--host", infra().telemetry.host, "--port", str(infra().telemetry.port),
            # emptied at each fresh `up` (see LocalBackend); bounded while it runs
            "--db", str(state / "telemetry" / "telemetry.sqlite"), "--max-age", "3600",
            "--max-bytes", str(256 * 1024 * 1024),
        ],
        "prometheus": [
            paths.executable("prometheus"),
            f"--config.file={state / 'prometheus.yml'}",
            f"--storage.tsdb.path={state / 'prometheus'}",
            f"--web.listen-address={infra().prometheus.address}",
            # served at its root, its pages link under the Jupyter server's path for it
            f"--web.external-url={links.prometheus_external_url()}", "--web.route-prefix=/",
            "--storage.tsdb.retention.time=6h",
            "--log.level=warn",
        ],
        "traefik": [paths.executable("traefik"), f"--configFile={state / 'traefik.yml'}"],
        # renews the lab's certificates (labkit.certs); started with the infrastructure
        CERTS_PROGRAM: [sys.executable, "-c", "from labkit.certs import main; main()"],
    }


CERTS_PROGRAM = "certs"
# Traefik's OpenTelemetry SDK (Go) queues 2,048 spans and as many access-log records by
# default, and drops what comes next: a load of a few thousand requests/s outruns it between
# two exports (every 5 s, every 1 s). Traefik passes no queue size of its own, so the SDK reads
# these (checked in Traefik 3.7's pkg/observability/types and the Go SDK's batch processors).
TRAEFIK_ENV = {"OTEL_BSP_MAX_QUEUE_SIZE": "65536", "OTEL_BLRP_MAX_QUEUE_SIZE": "65536"}


def faults_file(state: Path, service: Service, slot: int) -> Path:
    """Start-up faults (slow start) an instance reads when it starts; see labkit.faults."""
    return state / "faults" / f"{program_name(service, slot)}.json"


def release_file(state: Path, service: Service, slot: int) -> Path:
    """The version an instance runs (LAB_* overrides) when it starts; see labkit.versions."""
    return state / "releases" / f"{program_name(service, slot)}.json"


def limits_file(state: Path, service: Service, slot: int) -> Path:
    """Shell lines an instance's start runs before the service: its resource limits (see
    labkit.limits); no file, no limits."""
    return state / "limits" / f"{program_name(service, slot)}.sh"


def instance_environment(state: Path, service: Service, slot: int) -> dict[str, str]:
    endpoint = service.endpoint(slot)
    env = {
        "LAB_SERVICE": service.name,
        "LAB_SLOT": str(slot),
        "LAB_VERSION": service.version,
        "LAB_HOST": endpoint.host,
        "LAB_PORT": str(endpoint.port),
        "LAB_ETCD": infra().etcd.url,
        "LAB_LEASE_TTL": str(LEASE_TTL_SECONDS),
        "LAB_GATEWAY": infra().gateway.url,
        "LAB_ADMIN_PORT": str(service.admin_endpoint(slot).port),
        "LAB_ADMIN_TOKEN_FILE": str(admin_token.path(state)),
        "LAB_FAULTS_FILE": str(faults_file(state, service, slot)),
        "LAB_OTLP_ENDPOINT": infra().telemetry.url,
        "LAB_RELEASE_FILE": str(release_file(state, service, slot)),
        "LAB_TELEMETRY_FILE": str(telemetry_settings.settings_file(state)),
        "LAB_TLS_DIR": str(certs.folder(state)),  # mTLS or not, and this slot's certificate
        **registration_environment(service, slot),
    }
    if service.metrics_port is not None:
        env["LAB_METRICS_PORT"] = str(service.metrics_endpoint(slot).port)
    if service.name == auth.SERVICE:
        env.update(auth.instance_environment(state))
    return env


def registration_environment(service: Service, slot: int) -> dict[str, str]:
    """The keys instance `slot` registers under (labkit.keyspace), as its settings read them;
    the instance fills in {version} and {pid}."""
    keys = keyspace.instance_keys(service, slot)
    return {"LAB_SERVER_KEYS": " ".join(keys.servers), "LAB_REGISTRY_KEY": keys.registry}


def _ini_section(header: str, items: dict[str, object]) -> str:
    lines = [f"[{header}]"] + [f"{key}={value}" for key, value in items.items()]
    return "\n".join(lines) + "\n"


def _env_value(env: dict[str, str]) -> str:
    # supervisord expands %(name)s in values, so a literal % must be doubled
    return ",".join(f'{k}="{v.replace("%", "%%")}"' for k, v in env.items())


# The process opens its log itself (append) and reads nothing: supervisord's pipes would
# outlive supervisord as broken pipes, and a component writing its next line to one would
# die of SIGPIPE (Traefik did, at its first log line after supervisord was killed). `exec`
# keeps the pid the component's own, for supervisord's signals.
_OWN_LOG = 'log=$1; shift; exec "$@" < /dev/null >> "$log" 2>&1'


def logged_command(command: list[str], log: Path, limits: Path | None = None) -> list[str]:
    """`command`, run with its stdout and stderr appended to `log` and no stdin; `limits`, if
    given and present, is sourced first, at every start (a restart joins them again)."""
    if limits is None:
        return ["/bin/sh", "-c", _OWN_LOG, "sh", str(log), *command]
    script = f'limits=$1; shift; if [ -r "$limits" ]; then . "$limits"; fi; {_OWN_LOG}'
    return ["/bin/sh", "-c", script, "sh", str(limits), str(log), *command]


def _program(name: str, command: list[str], log: Path, user: User | None,
             env: dict[str, str] | None = None, limits: Path | None = None) -> dict:
    program: dict[str, object] = {
        # supervisord splits the command like a shell and expands %(...)s in it
        "command": shlex.join(logged_command(command, log, limits)).replace("%", "%%"),
        "directory": str(paths.REPO),
        "autostart": "false",  # labkit starts components in dependency order
        "autorestart": "true",
        "startsecs": 1,
        "startretries": 3,
        "stopsignal": "TERM",
        "stopwaitsecs": 5,
        "stopasgroup": "true",
        "killasgroup": "true",
        "redirect_stderr": "true",
        "stdout_logfile": "NONE",  # the process writes `log` itself
    }
    if user is not None:
        program["user"] = user.name  # supervisord (root) drops to it before the exec
    program["environment"] = _env_value({PROGRAM_ENV: name, **(env or {})})
    return program


def supervisord_conf(state: Path, user: User | None = None) -> str:
    logs = state / "logs"
    sections = [
        _ini_section("unix_http_server", {"file": state / "supervisor.sock", "chmod": "0700"}),
        _ini_section(
            "supervisord",
            {
                "logfile": state / SUPERVISORD_LOG,
                "pidfile": state / "supervisord.pid",
                "childlogdir": logs,
                "environment": _env_value({STATE_ENV: str(state), "PYTHONUNBUFFERED": "1"}),
            },
        ),
        _ini_section(
            "rpcinterface:supervisor",
            {"supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"},
        ),
        _ini_section("supervisorctl", {"serverurl": f"unix://{state / 'supervisor.sock'}"}),
    ]
    promsd_env = {
        "LAB_HOST": infra().promsd.host,
        "LAB_PORT": str(infra().promsd.port),
        "LAB_ETCD": infra().etcd.url,
        "LAB_REGISTRY_PREFIX": keyspace.registry_prefix(),
    }
    infra_env = {"promsd": promsd_env, "traefik": TRAEFIK_ENV}
    for name, command in infra_commands(state).items():
        options = _program(name, command, logs / f"{name}.log", user, infra_env.get(name))
        sections.append(_ini_section(f"program:{name}", options))
    for service in SERVICES.values():
        programs = [program_name(service, slot) for slot in range(1, MAX_REPLICAS + 1)]
        sections.append(_ini_section(f"group:{service.name}", {"programs": ",".join(programs)}))
        for slot, program in enumerate(programs, start=1):
            command = [sys.executable, "-m", service.module]
            env = instance_environment(state, service, slot)
            sections.append(
                _ini_section(f"program:{program}",
                             _program(program, command, logs / f"{program}.log", user, env,
                                      limits_file(state, service, slot)))
            )
    return "\n".join(sections)


def traefik_static(state: Path) -> dict:
    static: dict = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            name: {
                "address": endpoint.address,
                # a second Traefik may listen beside this one: `up` replaces an orphaned
                # gateway (its supervisord died) by a supervised one without a gap
                "reusePort": True,
                # stop within a second at `down`, instead of Traefik's default 10 s grace
                "transport": {"lifeCycle": {"graceTimeOut": "1s"}},
            }
            for name, endpoint in (("web", infra().gateway), ("websecure", infra().gateway_tls),
                                   ("traefik", infra().traefik_api))
        },
        "api": {"dashboard": True, "insecure": True},
        "ping": {"entryPoint": "traefik"},
        "metrics": {
            "prometheus": {
                "entryPoint": "traefik",
                "addRoutersLabels": True,
                "addServicesLabels": True,
            }
        },
        "providers": {
            # 0s: apply registry changes at once instead of batching them for 2 s
            "providersThrottleDuration": "0s",
            "etcd": {"endpoints": [infra().etcd.address], "rootKey": keyspace.TRAEFIK_ROOT},
        },
        "log": {"level": "INFO", "format": "json"},
        # Traefik's own spans (entry point, then the call to the chosen server) and its access
        # log, both over OTLP to the telemetry store: the access log's only destination, so
        # lab.logs() sees the gateway next to the services.
        # sampleRate: for requests that arrive untraced (a browser, curl); a request whose
        # caller decided (the load generator's traceparent) keeps that decision
        "tracing": {
            "serviceName": "traefik",
            "sampleRate": telemetry_settings.load(state).sample,
            "otlp": {"http": {"endpoint": f"{infra().telemetry.url}/v1/traces"}},
        },
        "experimental": {"otlpLogs": True},
        "accessLog": {
            "format": "json",
            # the request id as the client sent it and as the service answered it
            "fields": {"headers": {"names": {"X-Request-Id": "keep"}}},
            "otlp": {
                "serviceName": "traefik",
                "http": {"endpoint": f"{infra().telemetry.url}/v1/logs"},
            },
        },
    }
    # every request's X-Auth-* headers removed before any router: only the auth service's
    # answer to forwardAuth sets them (labkit.auth), so a client cannot forge an identity
    static["entryPoints"]["web"]["http"] = {"middlewares": auth.entry_point_middlewares()}
    # HTTPS: the websecure entry point ends TLS (labkit.certs) and hands each connection to
    # the web one with a PROXY protocol header naming the real client, so every route,
    # policy and client-IP rule applies to HTTPS as it is, once. Traefik dials from
    # 127.0.0.1: only its PROXY headers are read (a loopback client could pick that source
    # address, but it can pick any source address in 127.0.0.0/8 anyway)
    static["entryPoints"]["web"]["proxyProtocol"] = {
        "trustedIPs": sorted({f"{infra().gateway_tls.host}/32", "127.0.0.1/32"})}
    return static


# RED views (rate, errors, duration) over HTTP and gRPC alike, per instance, version and
# service, over RULES.window_s windows: short enough to follow a notebook's experiment.
_BY = "service, version, lab_instance"
# the lab's own traffic, not health checks or scrapes (nor etcd's own gRPC metrics)
_HTTP_ONLY = 'job="services", path!~"/health|/metrics"'
_GRPC_ONLY = 'job="services", grpc_service!~"grpc[.](health|reflection)[.].*"'


def recording_rules() -> dict:
    def rule(record: str, expr: str) -> dict:
        return {"record": record, "expr": expr}

    window = go(RULES.window_s)
    requests = RULES.record("instance", "lab_requests")
    errors = RULES.record("instance", "lab_errors")
    buckets = RULES.record("instance", "lab_request_duration_seconds_bucket")
    rules = [
        rule(requests,
             f"sum by ({_BY}) (rate(http_requests_total{{{_HTTP_ONLY}}}[{window}]))"
             f" or sum by ({_BY}) (rate(grpc_server_handled_total{{{_GRPC_ONLY}}}[{window}]))"),
        # "or ... * 0": an instance with no error series yet has an error rate of 0, not none
        rule(errors,
             f'sum by ({_BY}) (rate(http_requests_total{{{_HTTP_ONLY}, code=~"5.."}}[{window}]))'
             f" or sum by ({_BY}) "
             f'(rate(grpc_server_handled_total{{{_GRPC_ONLY}, grpc_code!="OK"}}[{window}]))'
             f" or {requests} * 0"),
        rule(buckets,
             f"sum by ({_BY}, le) "
             f"(rate(http_request_duration_seconds_bucket{{{_HTTP_ONLY}}}[{window}]))"
             f" or sum by ({_BY}, le) "
             f"(rate(grpc_server_handling_seconds_bucket{{{_GRPC_ONLY}}}[{window}]))"),
    ]
    for level, by in (("instance", _BY), ("version", "service, version"), ("service", "service")):
        if level != "instance":
            rules += [
                rule(RULES.record(level, "lab_requests"), f"sum by ({by}) ({requests})"),
                rule(RULES.record(level, "lab_errors"), f"sum by ({by}) ({errors})"),
            ]
        rules.append(rule(RULES.record(level, "lab_errors", "ratio_"),
                          f"{RULES.record(level, 'lab_errors')} / "
                          f"{RULES.record(level, 'lab_requests')}"))
        for quantile in (50, 95, 99):
            rules.append(rule(
                RULES.record(level, "lab_request_duration_seconds", f"p{quantile}_"),
                f"histogram_quantile(0.{quantile}, sum by ({by}, le) ({buckets}))"))
    return {"groups": [{"name": "lab-red", "rules": rules}]}


def prometheus_config(state: Path) -> dict:
    def static(job: str, address: str) -> dict:
        return {"job_name": job, "static_configs": [{"targets": [address]}]}

    return {
        "global": {"scrape_interval": go(RULES.evaluation_s),
                   "evaluation_interval": go(RULES.evaluation_s)},
        "rule_files": [str(state / "rules.yml")],
        "scrape_configs": [
            static("prometheus", infra().prometheus.address),
            static("traefik", infra().traefik_api.address),
            static("etcd", infra().etcd.address),
            {
                # instances come and go: ask the registry (through promsd) for targets
                "job_name": "services",
                "http_sd_configs": [
                    {"url": f"{infra().promsd.url}/targets", "refresh_interval": "2s"}
                ],
                # for instances on mTLS (promsd sets their __scheme__ to https): the lab CA,
                # and a client certificate of Prometheus's own, which it re-reads when renewed
                "tls_config": {
                    "ca_file": str(certs.ca_file(state)),
                    "cert_file": str(certs.prometheus_file(state)),
                    "key_file": str(certs.prometheus_file(state)),
                },
            },
        ],
    }


def traefik_standin_static(state: Path) -> dict:
    """Traefik's configuration for a stand-in that serves beside it while it restarts: the
    same, but its API on an address of its own, to see when it has its routes."""
    static = traefik_static(state)
    static["entryPoints"]["traefik"]["address"] = infra().traefik_standin_api.address
    return static


def write_traefik_static(state: Path) -> None:
    (state / "traefik.yml").write_text(yaml.safe_dump(traefik_static(state), sort_keys=False))
    (state / "traefik-standin.yml").write_text(
        yaml.safe_dump(traefik_standin_static(state), sort_keys=False))


def write_all(state: Path, user: User | None = None) -> None:
    """Write every generated file into the state folder, and make the folders the programs
    write, theirs alone (`user`'s, when labkit is root)."""
    for folder in PROGRAM_FOLDERS:
        private_folder(state / folder, user)
    (state / "supervisord.conf").write_text(supervisord_conf(state, user))
    write_traefik_static(state)
    (state / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(state), sort_keys=False))
    (state / "rules.yml").write_text(yaml.safe_dump(recording_rules(), sort_keys=False))
