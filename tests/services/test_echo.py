"""echo as a real process: registration, responses, graceful and ungraceful exits."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from labkit.keyspace import registry_prefix

from .support import (
    ETCD_HOST,
    Etcd,
    free_port,
    start_etcd,
    wait_registered,
    wait_until,
    worker_host,
)

pytestmark = pytest.mark.timeout(30)


def test_registers_both_keys_under_one_lease(etcd: Etcd, spawn) -> None:
    echo = spawn("echo", LAB_SLOT="2", LAB_VERSION="v7")
    keys = wait_registered(etcd, echo)
    _, url, traefik_lease = keys["traefik"]
    _, record, registry_lease = keys["registry"]
    assert traefik_lease == registry_lease is not None
    assert url.decode() == echo.url
    record = json.loads(record)
    assert record == {
        **record,
        "service": "echo",
        "instance": "echo-2",
        "slot": 2,
        "version": "v7",
        "address": f"{echo.host}:18080",
        "url": echo.url,
        "metrics_url": f"{echo.url}/metrics",
        "pid": echo.process.pid,
    }
    assert abs(record["started_at"] - time.time()) < 30


def test_answers_with_identity_json_and_headers(etcd: Etcd, spawn) -> None:
    echo = spawn("echo", LAB_SLOT="3", LAB_TEXT="hi there")
    wait_registered(etcd, echo)
    with httpx.Client(base_url=echo.url, timeout=2) as client:
        root = client.get("/")
        assert root.json() == {
            "hostname": "echo-3",
            "instance": "echo-3",
            "address": f"{echo.host}:18080",
            "version": "v1",
            "text": "hi there",
        }
        for path, code in (("/", 200), ("/health", 200), ("/ready", 200), ("/nope", 404)):
            response = client.get(path)
            assert response.status_code == code
            assert response.headers["x-instance"] == "echo-3"
            assert response.headers["x-version"] == "v1"
        assert client.get("/ready").json() == {"status": "ready"}
        metrics = client.get("/metrics").text
    assert 'http_requests_total{code="200",method="GET",path="/"}' in metrics
    assert 'path="<unmatched>"' in metrics  # /nope is not a route: no raw paths as labels
    assert 'lab_instance_info{lab_instance="echo-3",service="echo",version="v1"} 1.0' in metrics
    assert all(json.loads(line)["instance"] == "echo-3" for line in echo.log_path.open())


def test_sigterm_removes_both_keys_at_once_and_exits_0(etcd: Etcd, spawn) -> None:
    echo = spawn("echo", LAB_DRAIN_SECONDS="0.2")
    keys = wait_registered(etcd, echo)
    ours = {keys["traefik"][0], keys["registry"][0]}
    echo.signal(signal.SIGTERM)
    seen: list[set[str]] = []

    def deregistered() -> bool:
        seen.append(ours & etcd.snapshot().keys())
        return not seen[-1]

    wait_until(deregistered, "both keys to go", 5, interval=0.005)
    assert all(present in (ours, set()) for present in seen), f"half-registered: {seen}"
    assert echo.process.wait(timeout=5) == 0
    steps = [m for m in echo.messages() if m.startswith(("shutdown", "deregistered"))]
    assert steps == [
        "shutdown: not ready, deregistering",
        "deregistered",
        "shutdown: draining",
        "shutdown: stopping server, letting in-flight requests finish",
        "shutdown: done",
    ]


def test_sigkill_leaves_keys_until_the_lease_expires(etcd: Etcd, spawn) -> None:
    ttl = 2
    echo = spawn("echo", LAB_LEASE_TTL=str(ttl))
    keys = wait_registered(etcd, echo)
    ours = {keys["traefik"][0], keys["registry"][0]}
    echo.signal(signal.SIGKILL)
    echo.process.wait(timeout=5)
    killed = time.monotonic()
    assert ours <= etcd.snapshot().keys(), "keys vanished although nobody revoked the lease"
    wait_until(lambda: not ours & etcd.snapshot().keys(), "the lease to expire", ttl + 2)
    assert time.monotonic() - killed <= ttl + 2


def test_registers_once_etcd_comes_up(tmp_path, spawn) -> None:
    host = worker_host(ETCD_HOST, 1)
    port = free_port(host, 23760)  # a private etcd that is not running yet
    echo = spawn("echo", LAB_ETCD=f"http://{host}:{port}")
    wait_until(lambda: "etcd request failed" in echo.messages(), "a logged etcd failure", 5)
    late = start_etcd(tmp_path / "late-etcd", port, free_port(host, 23860))
    try:
        wait_registered(late, echo)
    finally:
        late.process.kill()
        late.process.wait(timeout=5)


def test_taken_address_exits_nonzero_without_registering(etcd: Etcd, spawn) -> None:
    first = spawn("echo", LAB_SLOT="8")
    wait_registered(etcd, first)
    second = spawn("echo", LAB_SLOT="9", LAB_HOST=first.host, LAB_ADMIN_PORT="28081")
    assert second.process.wait(timeout=10) != 0
    assert not any(key.startswith(registry_prefix("echo") + "echo-9/") for key in etcd.snapshot())
    assert any("address already in use" in message for message in second.messages())
