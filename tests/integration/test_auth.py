"""Authentication at the gateway, end to end on the live stack: the auth service's tokens,
lab.policies.require, the identity passed on, and the gateway failing closed while the auth
service cannot answer."""

from __future__ import annotations

import re

import grpc
import httpx
import pytest
from labstack import routeguide_pb2 as pb
from labstack import routeguide_pb2_grpc as pb_grpc

from labkit.demos.auth import bearer, callers, probe
from labkit.gateway import VERSION_HEADER
from labkit.topology import infra, service

from .helpers import declared_stack

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

ECHO, WEB = "http://echo.localhost/", "http://web.localhost/"


@pytest.fixture
def clean(lab):
    declared_stack(lab)
    yield lab
    for name in ("echo", "web", "routeguide", "auth"):
        lab.policies.clear(name)
    declared_stack(lab)


def statuses(frame) -> dict[str, set[int]]:
    return frame.groupby("caller")["status"].agg(set).to_dict()


def get(url: str, **headers: str) -> httpx.Response:
    host = url.split("//")[1].rstrip("/")
    return httpx.get(f"{infra().gateway.url}/", headers={"Host": host, **headers}, timeout=5)


def test_only_a_valid_token_with_the_scope_passes_and_its_identity_is_passed_on(clean):
    lab = clean
    kinds = callers(lab)
    assert statuses(probe(ECHO, kinds, n=2)) == dict.fromkeys(kinds, {200})  # open by default

    lab.policies.require("echo", "echo:read")
    frame = probe(ECHO, kinds, n=3)
    assert statuses(frame) == {
        "no token": {401}, "another key": {401}, "edited scope": {401}, "expired": {401},
        "wrong scope": {403}, "right scope": {200}, "forged identity": {200}}
    served = frame[frame["status"] == 200]
    assert set(served["subject"]) == {"learner"}, "the forged X-Auth-Subject must not arrive"
    # a request for one version takes that version's router: it is guarded too
    assert get(ECHO, **{VERSION_HEADER: "v1"}).status_code == 401
    assert get(ECHO, **{VERSION_HEADER: "v1"}, **kinds["right scope"]).status_code == 200

    lab.policies.require("echo", None)
    assert statuses(probe(ECHO, kinds, n=1)) == dict.fromkeys(kinds, {200})
    # unprotected, a client's identity header is still removed at the gateway
    assert "subject" not in get(ECHO, **{"X-Auth-Subject": "admin"}).json()


def test_protected_routes_fail_closed_and_others_are_untouched(clean):
    lab = clean
    good = bearer(lab.token(["web:read"]))
    lab.policies.require("web", "web:read")
    lab.policies.timeout("auth", response_header="300ms")  # bound the forwardAuth calls
    assert get(WEB, **good).status_code == 200  # web, then echo and routeguide: all served
    assert get(WEB).status_code == 401

    lab.fault("auth", 1, error_rate=1.0)
    assert [get(WEB, **good).status_code for _ in range(3)] == [500] * 3
    assert [get(ECHO).status_code for _ in range(3)] == [200] * 3

    lab.fault("auth", 1, error_rate=0, latency="1s")
    slow = get(WEB, **good)
    assert slow.status_code == 504 and slow.elapsed.total_seconds() < 0.9
    assert get(ECHO).elapsed.total_seconds() < 0.3

    lab.heal()
    assert get(WEB, **good).status_code == 200
    lab.scale("auth", 0)
    assert [get(WEB, **good).status_code for _ in range(3)] == [503] * 3
    assert [get(ECHO).status_code for _ in range(3)] == [200] * 3


def test_the_auth_services_own_red_metrics_show_its_answers(clean):
    lab = clean
    lab.policies.require("echo", "echo:read")
    kinds = callers(lab)
    probe(ECHO, {k: kinds[k] for k in ("no token", "wrong scope", "right scope")}, n=5)
    url = service("auth").endpoint(1).url
    text = httpx.get(f"{url}/metrics", timeout=5).text
    counts = {code: float(n) for code, n in re.findall(
        r'http_requests_total\{code="(\d+)",method="GET",path="/verify"\} (\S+)', text)}
    assert counts.get("401", 0) >= 5 and counts.get("403", 0) >= 5 and counts.get("200", 0) >= 5
    assert 'http_request_duration_seconds_count{method="GET",path="/verify"}' in text


def test_a_grpc_route_answers_unauthenticated_then_permission_denied_then_ok(clean):
    lab = clean
    lab.policies.require("routeguide", "routeguide:read")
    point = pb.Point(latitude=409146138, longitude=-746188906)
    with lab.grpc_channel("routeguide", "gateway") as channel:
        stub = pb_grpc.RouteGuideStub(channel)

        def code(*scopes: str) -> grpc.StatusCode:
            token = lab.token(list(scopes)) if scopes else ""
            metadata = [("authorization", f"Bearer {token}")] if scopes else []
            try:
                stub.GetFeature(point, metadata=metadata, timeout=3)
            except grpc.RpcError as error:
                return error.code()
            return grpc.StatusCode.OK

        assert code() == grpc.StatusCode.UNAUTHENTICATED  # Traefik's 401, in gRPC's words
        assert code("echo:read") == grpc.StatusCode.PERMISSION_DENIED  # its 403
        assert code("routeguide:read") == grpc.StatusCode.OK
