"""promsd: the registry as Prometheus http_sd targets."""

from __future__ import annotations

import httpx
import pytest
from labstack.promsd import targets

from .support import ETCD_HOST, Etcd, free_port, wait_registered, wait_until, worker_host

pytestmark = pytest.mark.timeout(30)


def record(instance: str, metrics_url: str, started_at: float) -> dict:
    service = instance.rsplit("-", 1)[0]
    return {
        "service": service,
        "instance": instance,
        "version": "v1",
        "metrics_url": metrics_url,
        "started_at": started_at,
    }


def test_targets_keep_the_newest_record_per_metrics_address() -> None:
    old = record("echo-1", "http://127.0.1.1:8080/metrics", 100.0)
    new = {**record("echo-1", "http://127.0.1.1:8080/metrics", 200.0), "version": "v2"}
    grpc = record("routeguide-1", "http://127.0.3.1:9100/metrics", 150.0)
    assert targets([new, grpc, old]) == [
        {
            "targets": ["127.0.1.1:8080"],
            "labels": {
                "service": "echo",
                "lab_instance": "echo-1",
                "version": "v2",
                "__metrics_path__": "/metrics", "__scheme__": "http",
            },
        },
        {
            "targets": ["127.0.3.1:9100"],
            "labels": {
                "service": "routeguide",
                "lab_instance": "routeguide-1",
                "version": "v1",
                "__metrics_path__": "/metrics", "__scheme__": "http",
            },
        },
    ]


def test_serves_registered_instances_as_targets(etcd: Etcd, spawn) -> None:
    echo = spawn("echo", LAB_SLOT="6", LAB_VERSION="v2")
    wait_registered(etcd, echo)
    promsd = spawn("promsd", LAB_PORT="18082")
    base = f"http://{promsd.host}:18082"
    wait_until(lambda: httpx.get(f"{base}/health", timeout=1).status_code == 200, "promsd", 5)
    groups = httpx.get(f"{base}/targets", timeout=2).json()
    assert {
        "targets": [f"{echo.host}:18080"],
        "labels": {
            "service": "echo",
            "lab_instance": "echo-6",
            "version": "v2",
            "__metrics_path__": "/metrics", "__scheme__": "http",
        },
    } in groups


def test_answers_503_when_etcd_is_down(spawn) -> None:
    host = worker_host(ETCD_HOST, 1)
    dead_etcd = f"http://{host}:{free_port(host, 23760)}"
    promsd = spawn("promsd", LAB_PORT="18082", LAB_ETCD=dead_etcd)
    base = f"http://{promsd.host}:18082"
    wait_until(lambda: httpx.get(f"{base}/health", timeout=1).status_code == 200, "promsd", 5)
    response = httpx.get(f"{base}/targets", timeout=5)
    assert response.status_code == 503
    assert "etcd unavailable" in response.json()["error"]
