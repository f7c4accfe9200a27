"""The stack's wiring, checked against the real components."""

import time

import httpx
import pytest

from labkit.errors import LabError
from labkit.topology import LEASE_TTL_SECONDS, infra, service

from .helpers import registered, wait

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]

ECHO = service("echo")


def test_status_shows_every_component_running(lab):
    status = lab.status().set_index("component")
    for component in ("etcd", "traefik", "prometheus", "promsd", "echo-1", "web-1", "routeguide-1"):
        assert status.loc[component, "state"] == "RUNNING", status
    assert status.loc["echo-2", "address"] == ECHO.endpoint(2).address  # 127.<block>.1.2:8080


def test_echo_answers_through_the_gateway_and_names_its_instance(lab):
    response = httpx.get(infra().gateway.url, headers={"Host": "echo.localhost"})
    assert response.status_code == 200
    body = response.json()
    assert body["text"] == "hello"
    assert response.headers["X-Instance"] == body["instance"]


def test_web_crosses_http_and_grpc_hops(lab):
    response = httpx.get(infra().gateway.url, headers={"Host": "web.localhost"}, timeout=5)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["echo"]["instance"].startswith("echo-")
    assert body["feature"]["served_by"].startswith("routeguide-")
    assert response.headers["x-request-id"]


def test_scale_up_registers_and_routes_then_scale_down_deregisters(lab):
    lab.scale("echo", 4)
    assert 4 in {slot for slot, _ in registered(lab, "echo")}
    assert ECHO.endpoint(4).url in lab.gateway.servers("echo")
    seen = {httpx.get(infra().gateway.url, headers={"Host": "echo.localhost"}).headers["X-Instance"]
            for _ in range(8)}
    assert "echo-4" in seen

    lab.scale("echo", 3)
    # a graceful stop revokes the lease: the record is gone at once, not after the TTL
    assert 4 not in {slot for slot, _ in registered(lab, "echo")}
    assert ECHO.endpoint(4).url not in lab.gateway.servers("echo")


def test_killed_instance_leaves_the_registry_within_its_lease_ttl(lab):
    lab.scale("echo", 3)
    pid = lab.kill("echo", 2)
    killed_at = time.monotonic()
    assert (2, pid) in registered(lab, "echo"), "etcd cannot know at once that a process died"
    assert wait(lambda: (2, pid) not in registered(lab, "echo"), LEASE_TTL_SECONDS + 2)
    gone_after = time.monotonic() - killed_at
    assert gone_after <= LEASE_TTL_SECONDS + 2
    # supervisord restarted it, and the new process registered itself
    assert wait(lambda: any(slot == 2 and p != pid for slot, p in registered(lab, "echo")), 10)


def test_paused_instance_stops_renewing_its_lease_and_returns_when_resumed(lab):
    lab.scale("echo", 3)
    pid = lab.pause("echo", 3)
    try:
        assert wait(lambda: (3, pid) not in registered(lab, "echo"), LEASE_TTL_SECONDS + 2)
        # Traefik applies etcd's delete within tens of milliseconds
        assert wait(lambda: ECHO.endpoint(3).url not in lab.gateway.servers("echo"), 1)
    finally:
        lab.resume("echo", 3)
    assert wait(lambda: (3, pid) in registered(lab, "echo"), 10)


def test_prometheus_scrapes_instances_found_in_the_registry(lab):
    def echo_targets():
        response = httpx.get(f"{infra().prometheus.url}/api/v1/targets", timeout=2)
        active = response.json()["data"]["activeTargets"]
        return {t["labels"].get("lab_instance") for t in active if t["health"] == "up"}

    assert wait(lambda: {"echo-1", "echo-2", "echo-3"} <= echo_targets(), 15), echo_targets()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lab: lab.scale("nope", 2), "known services: auth, echo, routeguide, web"),
        (lambda lab: lab.scale("echo", -1), "between 0 and 10"),
        (lambda lab: lab.scale("echo", 1.5), "whole number"),
        (lambda lab: lab.kill("echo", 9), "running instances: 1, 2, 3"),
        (lambda lab: lab.pause("nope", 1), "unknown service"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(lab, call, message):
    lab.scale("echo", 3)
    before = registered(lab, "echo")
    with pytest.raises(LabError, match=message):
        call(lab)
    assert registered(lab, "echo") == before


def test_grpc_load_through_the_gateway_is_balanced_and_attributed(lab):
    lab.scale("routeguide", 2)
    frame = lab.load("grpc://routeguide.localhost", rps=50, seconds=2)
    assert (frame["status"] == 200).all(), frame["error"].value_counts()
    assert set(frame["instance"]) == {"routeguide-1", "routeguide-2"}
    lab.fault("routeguide", 1, error_rate=1.0)
    try:
        failing = lab.load("grpc://routeguide.localhost", rps=50, seconds=1)
    finally:
        lab.heal()
    failed = failing[failing["instance"] == "routeguide-1"]
    assert (failed["error"] == "unavailable").all() and (failed["status"] == 0).all()
