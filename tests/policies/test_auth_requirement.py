"""lab.policies.require against a real Traefik and etcd: Traefik's forwardAuth asks an auth
server (here a small stand-in that knows two tokens) on every route of the service, passes the
identity on, and fails closed when the auth server does not answer."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from harness import HOST, Gateway
from services.support import worker_host

from labkit.errors import LabError
from labkit.gateway import VERSION_HEADER
from labkit.policies import Policies

GOOD, WEAK = "Bearer good", "Bearer weak"  # grants echo:read; grants web:read only


class StandIn(ThreadingHTTPServer):
    """Answers /verify as the auth service does, for the two tokens above."""

    daemon_threads = True
    asked: list[dict[str, str]]


class Verify(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: StandIn

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.asked.append({"path": self.path, **self.headers})
        code = {GOOD: 200, WEAK: 403}.get(self.headers.get("Authorization", ""), 401)
        self.send_response(code)
        if code == 200:
            self.send_header("X-Auth-Subject", "ada")
            self.send_header("X-Auth-Scopes", "echo:read")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StandIn]:
    server = StandIn((worker_host(6, 30), 0), Verify)
    server.asked = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def guarded(gateway: Gateway, stand_in: StandIn) -> Policies:
    """Policies whose forwardAuth calls go to the stand-in."""
    host, port = stand_in.server_address[:2]
    return Policies(gateway.etcd(), gateway.api_url, gateway_url=f"http://{host}:{port}")


def get(gateway: Gateway, **headers: str) -> httpx.Response:
    return httpx.get(f"{gateway.web_url}/", headers={"Host": HOST, **headers}, timeout=5)


def api(gateway: Gateway, path: str) -> dict:
    return httpx.get(f"{gateway.api_url}{path}", timeout=2).json()


def test_require_answers_401_403_200_on_every_route(gateway: Gateway, guarded: Policies,
                                                    stand_in: StandIn) -> None:
    guarded.retry("echo")  # another policy in force stays in force, after auth in the chain
    guarded.require("echo", "echo:read")

    assert get(gateway).status_code == 401
    assert get(gateway, Authorization=WEAK).status_code == 403
    assert get(gateway, Authorization=GOOD).status_code == 200
    # a request for one version takes that version's router: protected too
    assert get(gateway, **{VERSION_HEADER: "v1"}).status_code == 401
    assert get(gateway, **{VERSION_HEADER: "v2", "Authorization": WEAK}).status_code == 403
    asked = stand_in.asked[-1]
    assert asked["path"] == "/verify?scope=echo:read"
    assert "X-Version" not in asked  # only the credentials go to the auth server
    router = api(gateway, "/api/http/routers/echo@etcd")
    assert router["middlewares"] == ["echo-auth@etcd", "echo-retry@etcd"]
    assert api(gateway, "/api/http/routers/echo-v3@etcd")["middlewares"] == ["echo-auth@etcd"]
    table = guarded.policies("echo").set_index("policy")
    assert table.loc["auth", "settings"] == "scope=echo:read"
    assert table.loc["auth", "status"] == "enabled"

    guarded.require("echo", None)
    assert get(gateway).status_code == 200
    # past the gate, to v1's load balancer, which has no servers in this private gateway
    assert get(gateway, **{VERSION_HEADER: "v1"}).status_code == 503
    assert list(guarded.policies("echo")["policy"]) == ["retry"]
    assert "middlewares" not in api(gateway, "/api/http/routers/echo-v1@etcd")


def test_auth_runs_after_the_rate_limit_and_before_the_bulkhead(gateway: Gateway,
                                                                guarded: Policies) -> None:
    guarded.in_flight("echo", 5)
    guarded.require("echo", "echo:read")
    guarded.rate_limit("echo", average=100, burst=50)
    assert api(gateway, "/api/http/routers/echo@etcd")["middlewares"] == [
        "echo-rate-limit@etcd", "echo-auth@etcd", "echo-in-flight@etcd"]


def test_the_gateway_fails_closed_when_the_auth_server_does_not_answer(
        gateway: Gateway) -> None:
    nobody = f"http://{worker_host(6, 31)}:9"  # nothing listens there
    Policies(gateway.etcd(), gateway.api_url, gateway_url=nobody).require("echo", "echo:read")
    hits = sum(b.hits for b in gateway.backends)
    assert get(gateway, Authorization=GOOD).status_code == 500
    assert get(gateway, **{VERSION_HEADER: "v2", "Authorization": GOOD}).status_code == 500
    assert sum(b.hits for b in gateway.backends) == hits, "no request may reach the service"


BAD_CALLS: dict[str, tuple[Callable[[Policies], None], str]] = {
    "unknown scope": (lambda p: p.require("echo", "echo:admin"),
                      "unknown scope 'echo:admin'; valid scopes: echo:read, echo:write, "
                      "web:read, web:write, routeguide:read, routeguide:write"),
    "the auth service's scope": (lambda p: p.require("echo", "auth:read"), "unknown scope"),
    "a list": (lambda p: p.require("echo", ["echo:read"]), "unknown scope ['echo:read']"),
    "unknown service": (lambda p: p.require("nope", "echo:read"), "unknown service 'nope'"),
    "the auth service": (lambda p: p.require("auth", "echo:read"),
                         "auth cannot require a token: its token endpoint is how"),
}


@pytest.mark.parametrize("case", BAD_CALLS, ids=list(BAD_CALLS))
def test_a_bad_requirement_writes_nothing(gateway: Gateway, guarded: Policies,
                                          case: str) -> None:
    call, message = BAD_CALLS[case]
    guarded.require("echo", "web:read")  # something in force, to show it is left alone
    before = gateway.snapshot()

    with pytest.raises(LabError, match=re.escape(message)):
        call(guarded)

    assert gateway.snapshot() == before
    assert get(gateway, Authorization=WEAK).status_code == 403  # the stand-in's answer
    assert guarded.policies("echo").to_dict("records") == [
        {"policy": "auth", "settings": "scope=web:read", "status": "enabled"}]
