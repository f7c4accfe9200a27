"""Running a Starlette service: RED metrics, health routes, uvicorn under our shutdown order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import uvicorn
from opentelemetry import trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import tls
from .faults import FaultState
from .identity import GATEWAY_NAME, SCOPES_HEADER, SUBJECT_HEADER
from .metrics import LATENCY_BUCKETS
from .otel import REQUEST_ID, REQUEST_ID_HEADER, REQUEST_LOG, new_request_id
from .runtime import GRACE_SECONDS, STARTUP_TIMEOUT, Lifecycle
from .settings import Settings

log = logging.getLogger("labstack")
UNTRACED_PATHS = ("/health", "/ready", "/metrics")

REQUESTS = Counter(
    "http_requests_total", "HTTP requests by route template and status", ["method", "path", "code"]
)
DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template",
    ["method", "path"],
    buckets=LATENCY_BUCKETS,
)


class RedMiddleware:
    """Rate, errors, duration per route template (`/items/{id}`, never raw paths: cardinality)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before responding

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            # Starlette's router stores the matched route in the scope.
            path = getattr(scope.get("route"), "path", "<unmatched>")
            REQUESTS.labels(scope["method"], path, str(status)).inc()
            DURATION.labels(scope["method"], path).observe(time.perf_counter() - start)


class RequestContextMiddleware:
    """The request id (the caller's x-request-id, or a new one), returned to the caller,
    attached to the trace, and one log record per request, which carries it.

    Runs inside the OpenTelemetry middleware, so the record also carries the trace id.
    Health checks and scrapes are neither logged nor traced: they would drown the lessons.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER)
        request_id = new_request_id(incoming)
        token = REQUEST_ID.set(request_id)
        trace.get_current_span().set_attribute("request.id", request_id)
        start, status = time.perf_counter(), 500

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            level = logging.WARNING if status >= 500 else logging.INFO
            REQUEST_LOG.log(level, "%s %s %d", scope["method"], scope["path"], status, extra={
                "method": scope["method"], "path": scope["path"], "status": status,
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                "client": (scope.get("client") or ("", 0))[0],
            })
            REQUEST_ID.reset(token)


class FaultMiddleware:
    """Injected latency and errors (see labstack.faults) for one route of the service.

    Wrapped around each route rather than the app: /health, /ready and /metrics
    stay exempt, and RED metrics still label injected errors by route template.
    """

    def __init__(self, app: ASGIApp, faults: FaultState, instance_id: str) -> None:
        self.app = app
        self.faults = faults
        self.failure = JSONResponse(
            {"error": "injected fault", "instance": instance_id}, status_code=500
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        plan = self.faults.plan()
        if plan.delay_s:
            await asyncio.sleep(plan.delay_s)  # not time.sleep: other requests keep flowing
        if plan.fail:
            await self.failure(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class IdentityGuard:
    """On mTLS, identity headers (labstack.identity) count only from the gateway's own client
    certificate: any other caller that sends them (a client of the lab CA such as Prometheus,
    or a forged request) gets 403. Without mTLS every loopback caller is believed, as before.
    """

    def __init__(self, app: ASGIApp, mtls: bool) -> None:
        self.app = app
        self.mtls = mtls
        self.refusal = JSONResponse(
            {"error": "identity headers are accepted only from the gateway, over mTLS"},
            status_code=403)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.mtls and scope["type"] == "http":
            headers = Headers(scope=scope)
            claims = SUBJECT_HEADER in headers or SCOPES_HEADER in headers
            if claims and tls.peer_name(scope) != GATEWAY_NAME:
                await self.refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


def service_routes(lifecycle: Lifecycle) -> list[BaseRoute]:
    """/health (liveness), /ready (readiness) and /metrics, the same for every HTTP service."""

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def ready(_: Request) -> Response:
        if lifecycle.is_ready():
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [Route("/health", health), Route("/ready", ready), Route("/metrics", metrics)]


def create_app(
    lifecycle: Lifecycle,
    routes: Sequence[Route],
    lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[Any]] | None = None,
) -> Starlette:
    """The service's `routes`, which get injected faults, plus the shared service routes."""
    for route in routes:
        # What Route(middleware=...) does, for routes the services have already built.
        route.app = FaultMiddleware(route.app, lifecycle.faults, lifecycle.settings.instance_id)
    return Starlette(
        routes=[*routes, *service_routes(lifecycle)],
        # outermost first: the span, then the request id (logged inside the span), then RED
        middleware=[
            Middleware(
                OpenTelemetryMiddleware,
                excluded_urls=",".join(UNTRACED_PATHS),
                exclude_spans=["receive", "send"],  # one span per request, not three
            ),
            Middleware(RequestContextMiddleware),
            Middleware(RedMiddleware),
            Middleware(IdentityGuard, mtls=lifecycle.tls is not None),
        ],
        lifespan=lifespan,
    )


def http_urls(settings: Settings) -> dict[str, str]:
    """The registry's url and metrics_url for an HTTP service (https: on mTLS)."""
    url = f"{'https' if tls.files(settings) else 'http'}://{settings.address}"
    return {"url": url, "metrics_url": f"{url}/metrics"}


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: serve_http owns the shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve_http(app: ASGIApp, settings: Settings, lifecycle: Lifecycle) -> None:
    """Serve `app` until SIGTERM/SIGINT, registering once the socket listens; exit 0 after."""
    asyncio.run(_serve(app, settings, lifecycle))


async def _serve(app: ASGIApp, settings: Settings, lifecycle: Lifecycle) -> None:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # keep our JSON handler on the root logger
        access_log=False,
        lifespan="on",
        # uvicorn annotates an int, but hands it to asyncio.wait_for, which takes seconds as float
        timeout_graceful_shutdown=GRACE_SECONDS,  # type: ignore[arg-type]
        # uvicorn adds these to every response, error pages included.
        headers=[("X-Instance", settings.instance_id), ("X-Version", settings.version)],
        **_tls_options(lifecycle.tls),
    )
    server = _Server(config)
    lifecycle.start_admin()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    serving = asyncio.create_task(_run_uvicorn(server))
    await _until_listening(server, serving)
    lifecycle.serving()

    signalled = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, signalled}, return_when=asyncio.FIRST_COMPLETED)
    if serving.done():  # the server stopped by itself: do not stay registered
        signalled.cancel()
        await asyncio.to_thread(lifecycle.registration.deregister)
        raise SystemExit(serving.result() or 1)
    await asyncio.to_thread(lifecycle.withdraw)
    log.info("shutdown: stopping server, letting in-flight requests finish")
    server.should_exit = True
    await asyncio.wait_for(serving, timeout=GRACE_SECONDS + 2)
    log.info("shutdown: done")


def _tls_options(files: tls.TlsFiles | None) -> dict[str, Any]:
    """uvicorn's options for mTLS (a context that re-reads the renewed certificate, and a
    protocol that tells the app who the client is), or none for plain HTTP."""
    if files is None:
        return {}
    context = tls.server_context(files)
    tls.keep_fresh(context, files)
    return {"ssl_context_factory": lambda _config, _default: context,
            "http": tls.PeerNamingProtocol}


async def _run_uvicorn(server: uvicorn.Server) -> int | str | None:
    """uvicorn calls sys.exit() when it cannot start (port taken): return that code instead."""
    try:
        await server.serve()
    except SystemExit as exc:
        return exc.code
    return None


async def _until_listening(server: uvicorn.Server, serving: asyncio.Task) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if serving.done():  # uvicorn has logged why
            raise SystemExit(serving.result() or 1)
        if time.monotonic() > deadline:
            where = f"{server.config.host}:{server.config.port}"
            raise TimeoutError(f"not listening on {where} after {STARTUP_TIMEOUT:g} s")
        await asyncio.sleep(0.01)
