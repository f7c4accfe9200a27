"""web: the front service. Calls echo (HTTP) and routeguide (gRPC), both through the gateway.

It never talks to an instance directly: routing, retries and balancing are
the gateway's job. The caller's x-request-id (or a new one) goes to both hops
and back in the response, so one request can be followed through the logs;
its trace context goes along too (OpenTelemetry instruments both clients).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import routeguide_pb2 as pb
from . import routeguide_pb2_grpc as pb_grpc
from .features import FEATURES
from .httpservice import create_app, http_urls, serve_http
from .logs import describe_error
from .otel import REQUEST_ID, REQUEST_ID_HEADER
from .runtime import Lifecycle, bootstrap
from .settings import Settings

log = logging.getLogger("labstack.web")

DOWNSTREAM_TIMEOUT = 2.0  # seconds per hop
ECHO_HOST = "echo.localhost"  # the gateway routes by Host (HTTP) and authority (gRPC)
ROUTEGUIDE_AUTHORITY = "routeguide.localhost"
def describe(error: BaseException) -> str:
    """A one-line reason a hop failed, for the 502 body and the log."""
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code} from {error.request.url}"
    if isinstance(error, grpc.aio.AioRpcError):
        return f"{error.code().name}: {error.details()}"
    return describe_error(error)


async def call_echo(client: httpx.AsyncClient, request_id: str) -> Any:
    response = await client.get("/", headers={REQUEST_ID_HEADER: request_id})
    response.raise_for_status()
    return response.json()


async def call_routeguide(stub: pb_grpc.RouteGuideStub, request_id: str) -> dict[str, Any]:
    place = random.choice(FEATURES)
    call = stub.GetFeature(
        pb.Point(latitude=place.latitude, longitude=place.longitude),
        metadata=((REQUEST_ID_HEADER, request_id),),
        timeout=DOWNSTREAM_TIMEOUT,
    )
    feature = await call
    served_by = (await call.initial_metadata()).get("x-instance")
    return {"name": feature.name, "served_by": served_by}


def build(settings: Settings, lifecycle: Lifecycle) -> Starlette:
    gateway_url = settings.gateway
    assert gateway_url is not None
    gateway = urlsplit(gateway_url)

    @asynccontextmanager
    async def downstreams(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        # Created inside the event loop: grpc.aio channels belong to the loop that made them.
        channel = grpc.aio.insecure_channel(
            f"{gateway.hostname}:{gateway.port}",
            options=[("grpc.default_authority", ROUTEGUIDE_AUTHORITY)],
            interceptors=aio_client_interceptors(),  # a client span; traceparent in metadata
        )
        async with httpx.AsyncClient(
            base_url=gateway_url, headers={"Host": ECHO_HOST}, timeout=DOWNSTREAM_TIMEOUT
        ) as echo:
            HTTPXClientInstrumentor.instrument_client(echo)  # a client span; traceparent header
            try:
                yield {"echo": echo, "routeguide": pb_grpc.RouteGuideStub(channel)}
            finally:
                await channel.close()

    async def home(request: Request) -> Response:
        request_id = REQUEST_ID.get()  # the caller's or a new one (see RequestContextMiddleware)
        echo, feature = await asyncio.gather(
            call_echo(request.state.echo, request_id),
            call_routeguide(request.state.routeguide, request_id),
            return_exceptions=True,
        )
        failed = {
            hop: describe(result)
            for hop, result in (("echo", echo), ("routeguide", feature))
            if isinstance(result, BaseException)
        }
        if failed:
            log.warning(
                "downstream call failed", extra={"request_id": request_id, "failed": failed}
            )
            body = {"error": "downstream call failed", "failed": failed, "request_id": request_id}
            return JSONResponse(body, status_code=502)
        body = {
            "instance": settings.instance_id,
            "version": settings.version,
            "echo": echo,
            "feature": feature,
        }
        return JSONResponse(body)

    return create_app(lifecycle, [Route("/", home)], lifespan=downstreams)


def main() -> None:
    settings = bootstrap(needs=("LAB_GATEWAY", "LAB_ADMIN_PORT"))
    lifecycle = Lifecycle(settings, **http_urls(settings))
    serve_http(build(settings, lifecycle), settings, lifecycle)


if __name__ == "__main__":
    main()
