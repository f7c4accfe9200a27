import configparser
import shlex
import subprocess
import sys

import pandas as pd
import yaml

from labkit import canary, dashboard
from labkit.backends import local_config
from labkit.gateway import route_keys
from labkit.privileges import User
from labkit.topology import INFRA_COMPONENTS, MAX_REPLICAS, RULES, SERVICES, infra, service


def test_supervisord_conf_declares_every_component_and_replica_slot(tmp_path):
    text = local_config.supervisord_conf(tmp_path)
    conf = configparser.RawConfigParser()
    conf.read_string(text)
    for component in ("etcd", "promsd", "prometheus", "traefik"):
        assert conf.get(f"program:{component}", "autostart") == "false"
    programs = conf.get("group:echo", "programs").split(",")
    assert programs == [f"echo-{n}" for n in range(1, MAX_REPLICAS + 1)]
    env = conf.get("program:echo-2", "environment")
    host = service("echo").endpoint(2).host  # 127.<this process's block>.1.2
    assert f'LAB_HOST="{host}"' in env and 'LAB_PORT="8080"' in env
    # every process inherits the stack marker that `down` uses to reap strays
    assert local_config.STATE_ENV in conf.get("supervisord", "environment")
    # Traefik's OpenTelemetry SDK queues deep enough not to drop spans and access-log
    # records under load (its default 2,048 overflows between exports)
    traefik = conf.get("program:traefik", "environment")
    assert ('OTEL_BSP_MAX_QUEUE_SIZE="65536"' in traefik
            and 'OTEL_BLRP_MAX_QUEUE_SIZE="65536"' in traefik)


def test_under_root_every_program_runs_as_the_unprivileged_user(tmp_path):
    user = User("labkit", 999, 995)
    conf = configparser.RawConfigParser()
    conf.read_string(local_config.supervisord_conf(tmp_path, user))
    programs = [s.removeprefix("program:") for s in conf.sections() if s.startswith("program:")]
    certs = 1  # the certificates' renewer
    assert len(programs) == len(INFRA_COMPONENTS) + certs + MAX_REPLICAS * len(SERVICES), programs
    assert {conf.get(f"program:{p}", "user") for p in programs} == {"labkit"}
    assert conf.get("unix_http_server", "chmod") == "0700"  # the control socket: root's only
    assert "user" not in conf["supervisord"], "supervisord stays root: it starts them as user"
    # not root: no user= at all (they run as labkit's own user, as before)
    conf = configparser.RawConfigParser()
    conf.read_string(local_config.supervisord_conf(tmp_path))
    assert not [p for p in programs if conf.has_option(f"program:{p}", "user")]


def test_every_instance_reads_the_labs_admin_token_from_the_state_folder(tmp_path):
    env = local_config.instance_environment(tmp_path, service("echo"), 1)
    assert env["LAB_ADMIN_TOKEN_FILE"] == str(tmp_path / "admin-token")


def test_traefik_applies_registry_changes_without_throttling(tmp_path):
    static = local_config.traefik_static(tmp_path)
    assert static["providers"]["providersThrottleDuration"] == "0s"
    assert static["global"] == {"checkNewVersion": False, "sendAnonymousUsage": False}
    assert static["entryPoints"]["web"]["address"] == infra().gateway.address


def test_prometheus_discovers_instances_through_the_registry(tmp_path):
    config = local_config.prometheus_config(tmp_path)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["services"]["http_sd_configs"][0]["url"].endswith("/targets")
    yaml.safe_load(yaml.safe_dump(config))  # round-trips as YAML
    assert config["rule_files"] == [str(tmp_path / "rules.yml")]


def test_recording_rules_cover_each_level_of_the_red_views():
    records = [r["record"] for r in local_config.recording_rules()["groups"][0]["rules"]]
    for level in ("instance", "version", "service"):
        assert f"{level}:lab_errors:ratio_rate10s" in records
        assert f"{level}:lab_request_duration_seconds:p95_rate10s" in records
    # a rule may only use the records defined before it (one group, evaluated in order)
    for position, rule in enumerate(local_config.recording_rules()["groups"][0]["rules"]):
        used = {r for r in records if r in rule["expr"]}
        assert used <= set(records[:position]), rule["record"]


def test_route_keys_define_the_transport_and_service_before_the_router():
    keys = list(route_keys(service("echo")))
    first_router = next(i for i, k in enumerate(keys) if k.startswith("traefik/http/routers/"))
    assert keys[0].startswith("traefik/http/serversTransports/echo/")
    assert "traefik/http/services/echo/loadBalancer/serversTransport" in keys[:first_router]
    assert "traefik/http/routers/echo/rule" in keys


def _records() -> set[str]:
    return {r["record"] for r in local_config.recording_rules()["groups"][0]["rules"]}


def test_rule_windows_and_evaluation_come_from_the_topology(tmp_path):
    rules = local_config.recording_rules()["groups"][0]["rules"]
    window = f"[{RULES.window_s}s]"
    assert all(window in r["expr"] for r in rules if "rate(" in r["expr"])
    interval = f"{RULES.evaluation_s}s"
    assert local_config.prometheus_config(tmp_path)["global"] == {
        "scrape_interval": interval, "evaluation_interval": interval}
    assert RULES.record("version", "lab_errors", "ratio_") in _records()


def test_every_record_that_labkit_queries_is_generated():
    """The canary's and the dashboard's queries name records the rules define."""
    queried = []

    class Recorder:
        def query(self, promql, end=None):
            queried.append(promql.split("{")[0])
            return pd.DataFrame(columns=["time", "value", "version"])

    canary.measure(Recorder(), "echo", start=100.0, end=110.0)
    queried += [panel.query for panel in dashboard.PANELS]
    assert queried and set(queried) <= _records()
    # the notebooks name these records literally
    assert {"instance:lab_requests:rate10s", "service:lab_errors:ratio_rate10s"} <= _records()


def test_each_process_appends_to_its_own_log_and_reads_no_pipe(tmp_path):
    """supervisord's death must not break a component's output (Traefik died of SIGPIPE)."""
    conf = configparser.RawConfigParser()
    conf.read_string(local_config.supervisord_conf(tmp_path))
    for program in ("traefik", "etcd", "prometheus", "echo-2"):
        assert conf.get(f"program:{program}", "stdout_logfile") == "NONE"
        command = shlex.split(conf.get(f"program:{program}", "command").replace("%%", "%"))
        assert command[:2] == ["/bin/sh", "-c"]
        assert str(tmp_path / "logs" / f"{program}.log") in command
        # named, so that `status` can name it when its supervisord is gone
        assert f'{local_config.PROGRAM_ENV}="{program}"' in conf.get(f"program:{program}",
                                                                      "environment")
    log = tmp_path / "own.log"
    log.write_text("earlier\n")
    speak = "import sys; print('out'); print('err', file=sys.stderr); print(repr(sys.stdin.read()))"
    done = subprocess.run(local_config.logged_command([sys.executable, "-c", speak], log),
                          input="piped", capture_output=True, text=True, timeout=30, check=True)
    assert done.stdout == done.stderr == ""
    assert log.read_text() == "earlier\nout\nerr\n''\n"


def test_traefik_can_start_beside_itself_to_take_over_its_ports(tmp_path):
    entry_points = local_config.traefik_static(tmp_path)["entryPoints"]
    assert all(e["reusePort"] for e in entry_points.values())
