"""The configuration checks of the audit: the lab's generated configurations are clean; a
listener beyond loopback, a plaintext secret or an open control socket is flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from labkit.audit import configs
from labkit.audit.config_files import read
from labkit.topology import MAX_REPLICAS, SERVICES, infra


def findings(folder: Path, name: str, text: str) -> list[tuple[str, str, str]]:
    path = folder / name
    path.write_text(text)
    return [(f.rule, f.severity, f.location) for f in configs.check([path])]


def program(command: str, environment: str = "") -> str:
    env = f"environment={environment}\n" if environment else ""
    return f"[program:x]\ncommand={command}\n{env}"


def test_the_labs_generated_configurations_have_no_high_finding(tmp_path):
    files = configs.generate(tmp_path)
    assert {p.name for p in files} >= {"supervisord.conf", "traefik.yml", "prometheus.yml",
                                       configs.ROUTES}
    found = configs.check(files)
    assert [f for f in found if f.severity == "high"] == []
    # not vacuous: every component's and instance's listen address was read and checked
    listening = [leaf for path in files for leaf in read(path) if leaf.listens]
    programs = {leaf.section for leaf in listening}
    assert {"[program:etcd]", "[program:promsd]", "[program:telemetry]",
            "[program:prometheus]"} <= programs
    assert {f"[program:{svc.instance_id(slot)}]" for svc in SERVICES.values()
            for slot in range(1, MAX_REPLICAS + 1)} <= programs
    traefik = {leaf.value for leaf in listening if leaf.file == "traefik.yml"}
    assert traefik == {infra().gateway.address, infra().gateway_tls.address,
                       infra().traefik_api.address}


def test_the_labs_accepted_medium_findings_are_the_unauthenticated_control_apis(tmp_path):
    found = configs.check(configs.generate(tmp_path))
    assert {(f.rule, f.location) for f in found} == {
        ("unauthenticated-api", "traefik.yml api.insecure"),
        ("unauthenticated-api", "traefik-standin.yml api.insecure"),
        ("unauthenticated-api", "supervisord.conf [program:etcd] command --listen-client-urls"),
    }


@pytest.mark.parametrize("address", [":8000", "0.0.0.0:8000", "[::]:8000", "10.1.2.3:8000",
                                     "lab.example.org:8000", ":53/udp"])
def test_a_traefik_entry_point_beyond_loopback_is_flagged(tmp_path, address):
    text = yaml.safe_dump({"entryPoints": {"web": {"address": address}}})
    assert findings(tmp_path, "traefik.yml", text) == [
        ("listen-beyond-loopback", "high", "traefik.yml entryPoints.web.address")]


@pytest.mark.parametrize("address", ["127.0.0.1:8000", "127.4.0.1:8000", "[::1]:8000",
                                     "localhost:8000"])
def test_a_traefik_entry_point_on_loopback_is_clean(tmp_path, address):
    text = yaml.safe_dump({"entryPoints": {"web": {"address": address}}})
    assert findings(tmp_path, "traefik.yml", text) == []


def test_traefiks_api_without_its_entry_point_opens_8080_on_every_interface(tmp_path):
    text = yaml.safe_dump({"entryPoints": {"web": {"address": "127.0.0.1:8000"}},
                           "api": {"dashboard": True, "insecure": True}})
    assert findings(tmp_path, "traefik.yml", text) == [
        ("listen-beyond-loopback", "high", "traefik.yml api.insecure")]


@pytest.mark.parametrize(("command", "flag"), [
    ("etcd --listen-client-urls http://127.0.0.1:2379,http://0.0.0.0:2379 --client-cert-auth",
     "--listen-client-urls"),
    ("prometheus --web.listen-address=0.0.0.0:9095", "--web.listen-address"),
    ("python -m labstack.telemetry --host 0.0.0.0 --port 4318", "--host"),
])
def test_a_program_flag_binding_beyond_loopback_is_flagged(tmp_path, command, flag):
    assert findings(tmp_path, "supervisord.conf", program(command)) == [
        ("listen-beyond-loopback", "high", f"supervisord.conf [program:x] command {flag}")]


def test_an_instance_whose_lab_host_is_the_wildcard_is_flagged(tmp_path):
    text = program("python -m labstack.echo", 'LAB_HOST="0.0.0.0",LAB_PORT="8080"')
    assert findings(tmp_path, "supervisord.conf", text) == [
        ("listen-beyond-loopback", "high", "supervisord.conf [program:x] environment LAB_HOST")]


def test_the_wildcard_address_anywhere_else_is_flagged(tmp_path):
    text = yaml.safe_dump({"scrape_configs": [{"static_configs": [{"targets": ["0.0.0.0:9"]}]}]})
    assert [rule for rule, *_ in findings(tmp_path, "prometheus.yml", text)] == [
        "wildcard-address"]


def test_supervisords_http_server_on_a_bare_port_listens_everywhere(tmp_path):
    text = "[inet_http_server]\nport=9001\nusername=lab\npassword={SHA}a9993e36\n"
    assert findings(tmp_path, "supervisord.conf", text) == [
        ("listen-beyond-loopback", "high", "supervisord.conf [inet_http_server] port")]


@pytest.mark.parametrize(("name", "text", "location", "secret"), [
    ("supervisord.conf", "[inet_http_server]\nport=127.0.0.1:9001\nusername=lab\n"
                         "password=changeme\n", "[inet_http_server] password", "changeme"),
    ("supervisord.conf", program("x", 'LAB_DB_PASSWORD="hunter2"'),
     "[program:x] environment LAB_DB_PASSWORD", "hunter2"),
    ("supervisord.conf", program("x --auth-token=s3cr3t"), "[program:x] command --auth-token",
     "s3cr3t"),
    ("prometheus.yml", yaml.safe_dump({"basic_auth": {"username": "u", "password": "pw0rd"}}),
     "basic_auth.password", "pw0rd"),
    ("traefik.yml", yaml.safe_dump({"tracing": {"otlp": {"http": {
        "endpoint": "http://otel:hunter2@127.0.0.1:4318"}}}}), "tracing.otlp.http.endpoint",
     "hunter2"),
    ("traefik-routes.json", json.dumps(
        {"traefik/http/middlewares/auth/basicAuth/users/0": "admin:opensesame"}),
     "traefik/http/middlewares/auth/basicAuth/users/0", "opensesame"),
    ("supervisord.conf", program("x", 'STRIPE_API_KEY="sk_live_1"'),
     "[program:x] environment STRIPE_API_KEY", "sk_live_1"),
])
def test_a_plaintext_secret_is_flagged_without_being_shown(tmp_path, name, text, location,
                                                            secret):
    path = tmp_path / name
    path.write_text(text)
    found = configs.check([path])
    assert [(f.rule, f.severity, f.location) for f in found] == [
        ("plaintext-secret", "high", f"{name} {location}")]
    assert secret not in found[0].message and secret not in found[0].fingerprint


@pytest.mark.parametrize("text", [
    "[inet_http_server]\nport=127.0.0.1:9001\nusername=lab\npassword={SHA}a9993e36\n",
    program("x", 'LAB_DB_PASSWORD="%(ENV_DB_PASSWORD)s"'),
    program("x", 'LAB_PASSWORD_FILE="/run/secrets/db"'),
    program("x", 'LAB_SERVER_KEYS="traefik/http/services/echo/x"'),
    program("x --password ${PASSWORD}"),
])
def test_secret_references_hashes_and_key_names_are_not_plaintext_secrets(tmp_path, text):
    assert findings(tmp_path, "supervisord.conf", text) == []


def test_a_basic_auth_user_with_a_hashed_password_is_clean(tmp_path):
    routes = {"traefik/http/middlewares/auth/basicAuth/users/0":
              "admin:$apr1$H6uskkkW$IgXLP6ewTrSuBkTrqE8wj/"}
    assert findings(tmp_path, "traefik-routes.json", json.dumps(routes)) == []


@pytest.mark.parametrize(("mode", "flagged"), [("0700", False), ("0770", True), ("0777", True)])
def test_supervisords_control_socket_is_for_its_owner_only(tmp_path, mode, flagged):
    text = f"[unix_http_server]\nfile=/tmp/s.sock\nchmod={mode}\n"
    expected = [("socket-permissions", "high", "supervisord.conf [unix_http_server] chmod")]
    assert findings(tmp_path, "supervisord.conf", text) == (expected if flagged else [])


@pytest.mark.parametrize(("value", "hosts"), [
    ("127.0.0.1:8000", ["127.0.0.1"]), (":8000", [""]), ("9001", [""]),
    ("[::1]:8000", ["::1"]), ("http://127.0.0.1:2379,http://10.0.0.1:2379",
                              ["127.0.0.1", "10.0.0.1"]),
    (":53/udp", [""]), ("127.1.2.3", ["127.1.2.3"]),
])
def test_listen_addresses_are_read_in_each_components_spelling(value, hosts):
    assert configs.hosts(value) == hosts


def test_a_running_labs_folder_is_checked_the_same_way(tmp_path):
    configs.generate(tmp_path)
    run = configs.audit(tmp_path)
    assert run.status == "checked" and f"read from {tmp_path}" in run.detail
    assert {f.rule for f in run.findings} == {"unauthenticated-api"}


def test_a_folder_without_configurations_fails_the_check_saying_so(tmp_path):
    run = configs.audit(tmp_path)
    assert run.status == "FAILED" and "no configuration files" in run.detail
