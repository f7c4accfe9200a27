"""RouteGuide calls for the notebooks: the four RPC kinds, the health check, reflection.

    from labkit.demos.routeguide import call_log
    df = call_log(lab.grpc_channel("routeguide"), 60)   # one row per call, with its instance

Any grpc.Channel will do: a registry channel (the client balances) or the gateway's.
"""

from __future__ import annotations

import time

import grpc
import pandas as pd
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from labstack import routeguide_pb2 as pb
from labstack import routeguide_pb2_grpc as pb_grpc
from labstack.features import FEATURES

from ..errors import LabError

KINDS = ("unary", "server_stream", "client_stream", "bidi")

_POINTS = [pb.Point(latitude=f.latitude, longitude=f.longitude) for f in FEATURES]
_HALF_SIDE = 5_000_000  # half a degree: a rectangle holding a few features


def _rectangle(i: int) -> pb.Rectangle:
    centre = _POINTS[i % len(_POINTS)]
    return pb.Rectangle(
        lo=pb.Point(latitude=centre.latitude - _HALF_SIDE, longitude=centre.longitude - _HALF_SIDE),
        hi=pb.Point(latitude=centre.latitude + _HALF_SIDE, longitude=centre.longitude + _HALF_SIDE),
    )


def _route(i: int) -> list[pb.Point]:
    return [_POINTS[(i + k) % len(_POINTS)] for k in range(4)]


def _notes(i: int) -> list[pb.RouteNote]:
    here = _POINTS[i % len(_POINTS)]
    return [pb.RouteNote(location=here, message=f"note {i}.{k}") for k in range(3)]


def _unary(stub: pb_grpc.RouteGuideStub, i: int, timeout: float) -> grpc.Call:
    return stub.GetFeature.with_call(_POINTS[i % len(_POINTS)], timeout=timeout)[1]


def _server_stream(stub: pb_grpc.RouteGuideStub, i: int, timeout: float) -> grpc.Call:
    call = stub.ListFeatures(_rectangle(i), timeout=timeout)
    for _ in call:
        pass
    return call


def _client_stream(stub: pb_grpc.RouteGuideStub, i: int, timeout: float) -> grpc.Call:
    return stub.RecordRoute.with_call(iter(_route(i)), timeout=timeout)[1]


def _bidi(stub: pb_grpc.RouteGuideStub, i: int, timeout: float) -> grpc.Call:
    call = stub.RouteChat(iter(_notes(i)), timeout=timeout)
    for _ in call:
        pass
    return call


_CALLS = dict(zip(KINDS, (_unary, _server_stream, _client_stream, _bidi), strict=True))


def call_log(
    channel: grpc.Channel, calls: int, kind: str = "unary", *, timeout: float = 2.0
) -> pd.DataFrame:
    """Make `calls` RouteGuide calls of one kind, one after another; one row per call.

    Columns: start (s since the first call), latency_ms, code ("OK" or the gRPC
    status name), instance (the x-instance that answered, "" if none), kind.
    Failed calls are rows too. `kind` is one of unary, server_stream, client_stream, bidi.
    """
    if kind not in _CALLS:
        raise LabError(f"unknown call kind {kind!r}; valid: {', '.join(KINDS)}")
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise LabError(f"calls must be a whole number >= 1, got {calls!r}")
    stub, make_call = pb_grpc.RouteGuideStub(channel), _CALLS[kind]
    rows, first = [], time.perf_counter()
    for i in range(calls):
        start = time.perf_counter()
        try:
            call, code = make_call(stub, i, timeout), "OK"
        except grpc.RpcError as exc:
            call, code = exc, exc.code().name  # a failed RPC is also a grpc.Call
        metadata = dict(call.initial_metadata() or ())
        rows.append(
            {
                "start": round(start - first, 4),
                "latency_ms": round((time.perf_counter() - start) * 1000, 2),
                "code": code,
                "instance": metadata.get("x-instance", ""),
                "kind": kind,
            }
        )
    return pd.DataFrame(rows, columns=["start", "latency_ms", "code", "instance", "kind"])


def health(address_or_channel: str | grpc.Channel, service: str = "", timeout: float = 2.0) -> str:
    """The standard gRPC health check: "SERVING", "NOT_SERVING" or "SERVICE_UNKNOWN"."""

    def check(channel: grpc.Channel) -> str:
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # the server does not know `service`
                return "SERVICE_UNKNOWN"
            raise LabError(f"health check failed: {exc.code().name} {exc.details()}") from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)

    if isinstance(address_or_channel, str):
        with grpc.insecure_channel(address_or_channel) as channel:
            return check(channel)
    return check(address_or_channel)


def reflected_services(channel: grpc.Channel, timeout: float = 2.0) -> list[str]:
    """The services a server lists through gRPC server reflection, sorted."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    try:
        replies = list(stub.ServerReflectionInfo(iter([request]), timeout=timeout))
    except grpc.RpcError as exc:
        raise LabError(f"server reflection failed: {exc.code().name} {exc.details()}") from None
    return sorted(s.name for r in replies for s in r.list_services_response.service)
