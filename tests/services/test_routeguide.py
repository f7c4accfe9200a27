"""routeguide as a real process: the four RPC kinds, health, reflection, registration, faults."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from labstack import routeguide_pb2 as pb
from labstack import routeguide_pb2_grpc as pb_grpc
from labstack.features import FEATURES

from .support import Etcd, Service, wait_registered, wait_until

pytestmark = pytest.mark.timeout(30)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def start_routeguide(etcd: Etcd, spawn, **env: str) -> Service:
    service = spawn("routeguide", LAB_PORT="15051", LAB_METRICS_PORT="19100", **env)
    wait_registered(etcd, service)
    return service


@pytest.fixture
def channel(etcd: Etcd, spawn) -> Iterator[grpc.Channel]:
    service = start_routeguide(etcd, spawn, LAB_SLOT="4")
    with grpc.insecure_channel(f"{service.host}:15051") as channel:
        yield channel


def point(feature) -> pb.Point:
    return pb.Point(latitude=feature.latitude, longitude=feature.longitude)


def assert_attributed(call: grpc.Call) -> None:
    metadata = dict(call.initial_metadata())
    assert metadata["x-instance"] == "routeguide-4"
    assert metadata["x-version"] == "v1"


def test_all_four_rpc_kinds_carry_instance_metadata(channel: grpc.Channel) -> None:
    stub = pb_grpc.RouteGuideStub(channel)

    feature, call = stub.GetFeature.with_call(point(FEATURES[0]), timeout=5)
    assert feature.name == FEATURES[0].name
    assert_attributed(call)
    nothing = stub.GetFeature(pb.Point(latitude=1, longitude=1), timeout=5)
    assert nothing.name == ""

    everywhere = pb.Rectangle(
        lo=pb.Point(latitude=-900_000_000, longitude=-1_800_000_000),
        hi=pb.Point(latitude=900_000_000, longitude=1_800_000_000),
    )
    stream = stub.ListFeatures(everywhere, timeout=5)
    assert sorted(f.name for f in stream) == sorted(f.name for f in FEATURES)
    assert_attributed(stream)

    summary, call = stub.RecordRoute.with_call(iter([point(f) for f in FEATURES[:3]]), timeout=5)
    assert (summary.point_count, summary.feature_count) == (3, 3)
    assert summary.distance > 0
    assert_attributed(call)

    here = pb.Point(latitude=7, longitude=7)
    notes = [pb.RouteNote(location=here, message=text) for text in ("a", "b", "c")]
    chat = stub.RouteChat(iter(notes), timeout=5)
    assert [n.message for n in chat] == ["a", "a", "b"]  # each note gets the earlier ones back
    assert_attributed(chat)


def test_health_and_reflection(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "routeguide.RouteGuide"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == SERVING
    services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "routeguide.RouteGuide" in services
    assert "grpc.health.v1.Health" in services


def test_registers_h2c_url_and_serves_metrics(etcd: Etcd, spawn) -> None:
    service = start_routeguide(etcd, spawn, LAB_SLOT="5")
    keys = wait_registered(etcd, service)
    assert keys["traefik"][1].decode() == f"h2c://{service.host}:15051"
    record = json.loads(keys["registry"][1])
    metrics_url = f"http://{service.host}:19100/metrics"
    assert record["url"] == f"h2c://{service.host}:15051"
    assert record["metrics_url"] == metrics_url
    with grpc.insecure_channel(f"{service.host}:15051") as channel:
        pb_grpc.RouteGuideStub(channel).GetFeature(point(FEATURES[1]), timeout=5)
    metrics = httpx.get(metrics_url, timeout=2).text
    assert (
        'grpc_server_handled_total{grpc_code="OK",grpc_method="GetFeature",'
        'grpc_service="routeguide.RouteGuide",grpc_type="unary"} 1.0'
    ) in metrics
    assert 'grpc_server_handling_seconds_count{grpc_method="GetFeature"' in metrics


def test_sigterm_reports_not_serving_while_draining_then_exits_0(etcd: Etcd, spawn) -> None:
    service = start_routeguide(etcd, spawn, LAB_DRAIN_SECONDS="1")
    keys = wait_registered(etcd, service)
    with grpc.insecure_channel(f"{service.host}:15051") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="routeguide.RouteGuide")
        service.signal(signal.SIGTERM)
        wait_until(
            lambda: health.Check(request, timeout=1).status == NOT_SERVING,
            "health NOT_SERVING during the drain",
            timeout=3,
        )
    assert not {keys["traefik"][0], keys["registry"][0]} & etcd.snapshot().keys()
    assert service.process.wait(timeout=10) == 0


def test_injected_errors_are_unavailable_but_spare_health_and_reflection(etcd: Etcd, spawn) -> None:
    service = start_routeguide(etcd, spawn, LAB_SLOT="6")
    assert service.admin_put({"error_rate": 1}).status_code == 200
    with grpc.insecure_channel(f"{service.host}:15051") as channel:
        stub = pb_grpc.RouteGuideStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.GetFeature(point(FEATURES[0]), timeout=5)
        assert (error.value.code(), error.value.details()) == (UNAVAILABLE, "injected fault")
        assert dict(error.value.initial_metadata())["x-instance"] == "routeguide-6"
        with pytest.raises(grpc.RpcError) as error:
            list(stub.ListFeatures(pb.Rectangle(), timeout=5))
        assert error.value.code() == UNAVAILABLE
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == SERVING
        assert "routeguide.RouteGuide" in ProtoReflectionDescriptorDatabase(channel).get_services()
    metrics = httpx.get(f"http://{service.host}:19100/metrics", timeout=2).text
    assert 'lab_injected_faults_total{kind="error"} 2.0' in metrics
    assert (
        'grpc_server_handled_total{grpc_code="UNAVAILABLE",grpc_method="GetFeature",'
        'grpc_service="routeguide.RouteGuide",grpc_type="unary"} 1.0'
    ) in metrics


def test_latency_delays_rpcs_in_parallel_but_not_health(etcd: Etcd, spawn) -> None:
    service = start_routeguide(etcd, spawn, LAB_SLOT="7")
    service.admin_put({"latency": {"ms": 200}})
    with grpc.insecure_channel(f"{service.host}:15051") as channel:
        stub = pb_grpc.RouteGuideStub(channel)
        start = time.perf_counter()
        assert stub.GetFeature(point(FEATURES[0]), timeout=5).name == FEATURES[0].name
        assert time.perf_counter() - start >= 0.2
        health = health_pb2_grpc.HealthStub(channel)
        start = time.perf_counter()
        health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert time.perf_counter() - start < 0.1
        # 40 at once: more than the old 16 workers, fewer than MAX_WORKERS, so no queueing.
        start = time.perf_counter()
        calls = [stub.GetFeature.future(point(FEATURES[i]), timeout=5) for i in range(40)]
        assert [call.result().name for call in calls] == [f.name for f in FEATURES[:40]]
        elapsed = time.perf_counter() - start
    print(f"40 parallel RPCs with 200 ms latency took {elapsed:.3f} s")
    # one round of 200 ms, with room for a busy machine (0.45 s seen under parallel labs); the
    # old 16 workers needed three rounds, at least 0.6 s
    assert elapsed < 0.55


def test_unready_reports_not_serving_and_withdraws_at_once(etcd: Etcd, spawn) -> None:
    service = start_routeguide(etcd, spawn, LAB_SLOT="8")
    keys = wait_registered(etcd, service)
    ours = {keys["traefik"][0], keys["registry"][0]}
    with grpc.insecure_channel(f"{service.host}:15051") as channel:
        health = health_pb2_grpc.HealthStub(channel)

        def statuses() -> set[int]:
            return {
                health.Check(health_pb2.HealthCheckRequest(service=name), timeout=2).status
                for name in ("", "routeguide.RouteGuide")
            }

        service.admin_put({"unready": True})
        wait_until(lambda: not ours & etcd.snapshot().keys(), "keys to go", 0.5, interval=0.005)
        assert statuses() == {NOT_SERVING}
        pb_grpc.RouteGuideStub(channel).GetFeature(point(FEATURES[0]), timeout=5)  # still alive
        service.admin_put({"unready": False})
        assert statuses() == {SERVING}
        wait_until(lambda: ours <= etcd.snapshot().keys(), "keys to return", 1.0)
