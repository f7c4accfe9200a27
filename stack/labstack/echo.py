"""echo: the smallest useful backend. Says who answered, for load-balancing lessons.

GET / -> {"hostname", "instance", "address", "version", "text"}; the original Go
sample answered {"hostname": ..., "text": "hello"}. Behind a route that requires a token
(lab.policies.require), also "subject" and "scopes": the identity the gateway verified.
"""

from __future__ import annotations

import json

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .httpservice import create_app, http_urls, serve_http
from .identity import SCOPES_HEADER, SUBJECT_HEADER
from .runtime import Lifecycle, bootstrap
from .settings import Settings


def build(settings: Settings, lifecycle: Lifecycle) -> Starlette:
    answer = {
        "hostname": settings.instance_id,
        "instance": settings.instance_id,
        "address": settings.address,
        "version": settings.version,
        "text": settings.text,
    }
    # Without an identity the answer never changes, so it is encoded once: echo is load-tested
    # at hundreds of rps.
    body = json.dumps(answer).encode()

    async def home(request: Request) -> Response:
        subject = request.headers.get(SUBJECT_HEADER)
        if subject is None:
            return Response(body, media_type="application/json")
        scopes = request.headers.get(SCOPES_HEADER, "").split()
        return JSONResponse({**answer, "subject": subject, "scopes": scopes})

    return create_app(lifecycle, [Route("/", home)])


def main() -> None:
    settings = bootstrap(needs=("LAB_ADMIN_PORT",))
    lifecycle = Lifecycle(settings, **http_urls(settings))
    serve_http(build(settings, lifecycle), settings, lifecycle)


if __name__ == "__main__":
    main()
