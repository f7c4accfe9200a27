"""web as a real process, without a gateway: failures name the hop, request ids flow back."""

from __future__ import annotations

import re

import httpx
import pytest

from .support import Etcd, next_host, wait_registered

pytestmark = pytest.mark.timeout(30)


def test_dead_gateway_gives_502_naming_both_hops_and_keeps_request_id(etcd: Etcd, spawn) -> None:
    web = spawn("web", LAB_PORT="18090", LAB_GATEWAY=f"http://{next_host()}:18000")
    wait_registered(etcd, web)
    response = httpx.get(f"{web.url}/", headers={"x-request-id": "req-42"}, timeout=10)
    assert response.status_code == 502
    assert response.headers["x-request-id"] == "req-42"
    assert response.headers["x-instance"] == "web-1"
    body = response.json()
    assert set(body["failed"]) == {"echo", "routeguide"}
    assert body["request_id"] == "req-42"
    assert "UNAVAILABLE" in body["failed"]["routeguide"]
    logged = [line for line in web.logs() if line["msg"] == "downstream call failed"]
    assert logged and logged[0]["request_id"] == "req-42"


def test_names_only_the_hop_that_failed(etcd: Etcd, spawn) -> None:
    # An echo instance as the "gateway": the HTTP hop works, the gRPC hop cannot.
    echo = spawn("echo")
    wait_registered(etcd, echo)
    web = spawn("web", LAB_PORT="18090", LAB_GATEWAY=echo.url)
    wait_registered(etcd, web)
    response = httpx.get(f"{web.url}/", headers={"x-request-id": "not a safe id"}, timeout=10)
    assert response.status_code == 502
    assert list(response.json()["failed"]) == ["routeguide"]
    generated = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated), "an unsafe id is replaced by a new one"
    assert httpx.get(f"{web.url}/ready", timeout=2).json() == {"status": "ready"}
