"""routeguide: the classic gRPC RouteGuide, for gRPC load balancing and discovery lessons.

All four RPC kinds, the standard health service and server reflection. Needs
the stubs generated from routeguide.proto (the command is at the top of it).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from . import routeguide_pb2 as pb
from . import routeguide_pb2_grpc as pb_grpc
from .features import FEATURES
from .grpcservice import (
    InstanceInterceptor,
    add_port,
    grpc_urls,
    serve_grpc,
    tracing_interceptor,
)
from .runtime import Lifecycle, bootstrap

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RouteGuide"].full_name
# Concurrent RPCs. Streaming RPCs hold a worker each while open, and so does injected
# latency: 200 ms at 100 RPC/s keeps ~20 busy, so 64 leaves room for bursts and streams.
MAX_WORKERS = 64
EARTH_RADIUS_M = 6_371_000
COORD_FACTOR = 1e7


def _point_key(point: pb.Point) -> tuple[int, int]:
    return point.latitude, point.longitude


def distance_m(start: pb.Point, end: pb.Point) -> int:
    """Great-circle distance in metres (haversine), as in the original example."""
    lat1, lat2 = (math.radians(p.latitude / COORD_FACTOR) for p in (start, end))
    dlat = lat2 - lat1
    dlon = math.radians((end.longitude - start.longitude) / COORD_FACTOR)
    a = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return int(EARTH_RADIUS_M * 2 * math.atan2(math.sqrt(a), math.sqrt(1 - a)))


class RouteGuide(pb_grpc.RouteGuideServicer):
    def __init__(self) -> None:
        self.features = {
            (f.latitude, f.longitude): pb.Feature(
                name=f.name, location=pb.Point(latitude=f.latitude, longitude=f.longitude)
            )
            for f in FEATURES
        }
        self.notes: dict[tuple[int, int], list[pb.RouteNote]] = {}
        self.notes_lock = threading.Lock()  # RouteChat streams run on several workers

    def _feature_at(self, point: pb.Point) -> pb.Feature | None:
        return self.features.get(_point_key(point))

    def GetFeature(self, request: pb.Point, context: grpc.ServicerContext) -> pb.Feature:
        # An unnamed feature means "nothing here", as in the original example.
        return self._feature_at(request) or pb.Feature(name="", location=request)

    def ListFeatures(
        self, request: pb.Rectangle, context: grpc.ServicerContext
    ) -> Iterator[pb.Feature]:
        lo_lat, hi_lat = sorted((request.lo.latitude, request.hi.latitude))
        lo_lon, hi_lon = sorted((request.lo.longitude, request.hi.longitude))
        for (lat, lon), feature in self.features.items():
            if lo_lat <= lat <= hi_lat and lo_lon <= lon <= hi_lon:
                yield feature

    def RecordRoute(
        self, request_iterator: Iterable[pb.Point], context: grpc.ServicerContext
    ) -> pb.RouteSummary:
        start = time.monotonic()
        points = features = distance = 0
        previous: pb.Point | None = None
        for point in request_iterator:
            points += 1
            features += self._feature_at(point) is not None
            if previous is not None:
                distance += distance_m(previous, point)
            previous = point
        return pb.RouteSummary(
            point_count=points,
            feature_count=features,
            distance=distance,
            elapsed_time=int(time.monotonic() - start),
        )

    def RouteChat(
        self, request_iterator: Iterable[pb.RouteNote], context: grpc.ServicerContext
    ) -> Iterator[pb.RouteNote]:
        for note in request_iterator:
            with self.notes_lock:
                earlier = self.notes.setdefault(_point_key(note.location), [])
                replies = list(earlier)
                earlier.append(note)
            yield from replies


def main() -> None:
    settings = bootstrap(needs=("LAB_METRICS_PORT", "LAB_ADMIN_PORT"))
    lifecycle = Lifecycle(settings, **grpc_urls(settings))
    server = grpc.server(
        ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="rpc"),
        # the tracing interceptor first: it is the outermost, so logs carry the trace id
        interceptors=[tracing_interceptor(), InstanceInterceptor(settings, lifecycle.faults)],
        # grpcio sets SO_REUSEPORT by default: a second instance on the same
        # address would silently share the port instead of failing.
        options=[("grpc.so_reuseport", 0)],
    )
    pb_grpc.add_RouteGuideServicer_to_server(RouteGuide(), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    add_port(server, lifecycle)
    serve_grpc(server, health_servicer, [SERVICE_NAME], settings, lifecycle)


if __name__ == "__main__":
    main()
