"""Running a grpcio service: identity metadata, RED metrics, health, ordered shutdown."""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import filters, server_interceptor
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import Counter, Histogram, start_http_server

from . import tls
from .faults import FaultState
from .metrics import LATENCY_BUCKETS
from .otel import REQUEST_ID, REQUEST_ID_HEADER, REQUEST_LOG, new_request_id
from .runtime import GRACE_SECONDS, Lifecycle
from .sampling import CONTROL
from .settings import Settings

log = logging.getLogger("labstack")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

# Names and labels as in go-grpc-prometheus, so the usual queries and dashboards apply.
HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code",
    ["grpc_service", "grpc_method", "grpc_type", "grpc_code"],
)
HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Time from RPC start to its last response",
    ["grpc_service", "grpc_method", "grpc_type"],
    buckets=LATENCY_BUCKETS,
)

_KINDS = {  # (request_streaming, response_streaming) -> grpc_type, handler attribute, factory
    (False, False): ("unary", "unary_unary", grpc.unary_unary_rpc_method_handler),
    (False, True): ("server_stream", "unary_stream", grpc.unary_stream_rpc_method_handler),
    (True, False): ("client_stream", "stream_unary", grpc.stream_unary_rpc_method_handler),
    (True, True): ("bidi_stream", "stream_stream", grpc.stream_stream_rpc_method_handler),
}


def tracing_interceptor() -> grpc.ServerInterceptor:
    """A server span per application RPC, continuing the caller's trace from its metadata.
    Health checks and reflection are not traced: they would drown the lessons."""
    ours = filters.negate(filters.any_of(filters.service_prefix("grpc.")))
    return server_interceptor(filter_=ours)


class InstanceInterceptor(grpc.ServerInterceptor):
    """Every RPC sends x-instance/x-version initial metadata and is counted and timed.

    RPCs of the application's services also get the injected faults (labstack.faults);
    gRPC's own services (grpc.health.*, grpc.reflection.*) never do.
    """

    def __init__(self, settings: Settings, faults: FaultState) -> None:
        self.metadata = (("x-instance", settings.instance_id), ("x-version", settings.version))
        self.faults = faults

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, _, method = handler_call_details.method.lstrip("/").rpartition("/")
        kind, attribute, factory = _KINDS[handler.request_streaming, handler.response_streaming]
        labels = (service, method, kind)
        behaviour = getattr(handler, attribute)
        faulty = not service.startswith("grpc.")
        wrap = self._wrap_stream if handler.response_streaming else self._wrap_unary
        return factory(
            wrap(behaviour, labels, faulty),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _inject(self, context: grpc.ServicerContext) -> None:
        plan = self.faults.plan()
        if plan.delay_s:
            time.sleep(plan.delay_s)  # holds this RPC's worker thread: see MAX_WORKERS
        if plan.fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected fault")

    def _wrap_unary(
        self, behaviour: Callable, labels: tuple[str, str, str], faulty: bool
    ) -> Callable:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            with self._handling(context, labels, faulty):
                return behaviour(request, context)

        return handle

    def _wrap_stream(
        self, behaviour: Callable, labels: tuple[str, str, str], faulty: bool
    ) -> Callable:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            with self._handling(context, labels, faulty):
                yield from behaviour(request, context)

        return handle

    @contextlib.contextmanager
    def _handling(
        self, context: grpc.ServicerContext, labels: tuple[str, str, str], faulty: bool
    ) -> Iterator[None]:
        """Identity and request id out, faults in; then metrics and (for the application's
        RPCs, not health checks) a log record if it failed, which carries the request id."""
        metadata = dict(context.invocation_metadata())
        incoming = metadata.get(REQUEST_ID_HEADER)
        request_id = new_request_id(incoming if isinstance(incoming, str) else None)
        REQUEST_ID.set(request_id)  # set, not reset later: a stream may end on another thread
        context.send_initial_metadata((*self.metadata, (REQUEST_ID_HEADER, request_id)))
        start, start_ns, code = time.perf_counter(), time.time_ns(), grpc.StatusCode.OK
        span = trace.get_current_span()  # the RPC's, from tracing_interceptor
        try:
            if faulty:
                span.set_attribute("request.id", request_id)
                self._inject(context)
            yield
        except GeneratorExit:  # the client went away mid-stream
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            code = context.code() or code
            _record(labels, code, start)
            failed = code != grpc.StatusCode.OK
            if (faulty and not span.is_recording()
                    and CONTROL.keep(failed, time.perf_counter() - start)):
                _keep(span.get_span_context(), metadata, labels, code, request_id, start_ns)
            # a failed RPC is logged; a successful one only at debug: its span says the same
            level = logging.DEBUG if code == grpc.StatusCode.OK else logging.WARNING
            if faulty and REQUEST_LOG.isEnabledFor(level):
                REQUEST_LOG.log(level, "/%s/%s %s", labels[0], labels[1], code.name, extra={
                    "rpc": f"/{labels[0]}/{labels[1]}", "grpc_code": code.name,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                })
            REQUEST_ID.set("")


def _keep(hop: SpanContext, metadata: dict[str, Any], labels: tuple[str, str, str],
          code: grpc.StatusCode, request_id: str, start_ns: int) -> None:
    """Record an unsampled RPC's span after all: it failed or was slow (labstack.sampling)."""
    caller = trace.get_current_span(_PROPAGATOR.extract(metadata)).get_span_context()
    status = Status(StatusCode.ERROR, code.name) if code != grpc.StatusCode.OK else Status()
    CONTROL.record_kept(hop, caller if caller.is_valid else None, f"/{labels[0]}/{labels[1]}",
                        SpanKind.SERVER, {
                            "rpc.system": "grpc", "rpc.service": labels[0],
                            "rpc.method": labels[1], "rpc.grpc.status_code": code.value[0],
                            "request.id": request_id,
                        }, status, start_ns, time.time_ns())


_PROPAGATOR = TraceContextTextMapPropagator()  # W3C trace context, as gRPC metadata


def _record(labels: tuple[str, str, str], code: grpc.StatusCode, start: float) -> None:
    HANDLED.labels(*labels, code.name).inc()
    HANDLING.labels(*labels).observe(time.perf_counter() - start)


def grpc_urls(settings: Settings) -> dict[str, str]:
    """The registry's url (h2c: gRPC over cleartext HTTP/2, as Traefik names it; https: on
    mTLS) and metrics_url (a side port Traefik never routes to: plain HTTP either way)."""
    return {
        "url": f"{'https' if tls.files(settings) else 'h2c'}://{settings.address}",
        "metrics_url": f"http://{settings.host}:{settings.metrics_port}/metrics",
    }


def add_port(server: grpc.Server, lifecycle: Lifecycle) -> None:
    """The service port: mTLS (a client certificate from the lab CA required) or h2c."""
    if lifecycle.tls is None:
        server.add_insecure_port(lifecycle.settings.address)
    else:
        server.add_secure_port(lifecycle.settings.address, tls.grpc_credentials(lifecycle.tls))


def serve_grpc(
    server: grpc.Server,
    health_servicer: health.HealthServicer,
    services: Sequence[str],
    settings: Settings,
    lifecycle: Lifecycle,
) -> None:
    """Start `server` (its port already added) and serve until SIGTERM/SIGINT, then stop in order.

    `services` are the names the health service reports, besides "": SERVING
    while the instance is ready, NOT_SERVING otherwise.
    """
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    lifecycle.start_admin()
    assert settings.metrics_port is not None
    metrics_server, _ = start_http_server(settings.metrics_port, addr=settings.host)
    lifecycle.watch(_health_follower(health_servicer, services, lifecycle))
    server.start()
    gc.freeze()  # what start-up made lives until exit: see labstack.httpservice
    lifecycle.serving()

    while not stop.wait(0.5):  # wakes up often so signals are handled promptly
        pass
    health_servicer.enter_graceful_shutdown()  # NOT_SERVING for every service
    lifecycle.withdraw()
    log.info("shutdown: stopping server, letting in-flight RPCs finish")
    server.stop(GRACE_SECONDS).wait(GRACE_SECONDS + 1)
    metrics_server.shutdown()
    log.info("shutdown: done")


def _health_follower(
    health_servicer: health.HealthServicer, services: Sequence[str], lifecycle: Lifecycle
) -> Callable[[], None]:
    """A readiness watcher that sets the health status of "" and `services`; sets it once now."""
    lock = threading.Lock()  # read and set together, so a stale status never lands last

    def follow() -> None:
        with lock:
            status = SERVING if lifecycle.is_ready() else NOT_SERVING
            for name in ("", *services):
                health_servicer.set(name, status)

    follow()  # the servicer starts with "" SERVING: not true before serving()
    return follow
