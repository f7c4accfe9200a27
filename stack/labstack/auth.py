"""auth: issues signed tokens with scopes, and verifies them for the gateway's forwardAuth.

    POST /token                     client credentials (HTTP Basic, the lab owner's secret);
                                    form body grant_type=client_credentials, scope="a b", and
                                    this lab's extensions ttl (seconds) and subject
                                    -> 200 {"access_token", "token_type", "expires_in", "scope"}
    GET  /verify?scope=echo:read    Authorization: Bearer <token>
                                    -> 200 with X-Auth-Subject and X-Auth-Scopes (Traefik copies
                                       them onto the request it forwards), 401 no or no valid
                                       token, 403 valid without that scope (RFC 6750 headers)
    GET  /.well-known/jwks.json     the public key, to verify tokens anywhere
    GET  /                          what it serves (in the spirit of RFC 8414's metadata)

The token endpoint follows OAuth 2.0's client-credentials grant (RFC 6749 4.4): one client,
"lab", whose secret the service makes at its first start beside its key (labstack.tokens),
owner only, so only the lab's owner can get tokens. Traefik calls /verify through the gateway
itself (a route of its own), so the call is balanced over the auth instances, health-checked,
and bounded by the auth load balancer's timeout like any other hop.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import sys
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .httpservice import create_app, http_urls, serve_http
from .identity import SCOPES_HEADER, SUBJECT_HEADER
from .runtime import Lifecycle, bootstrap
from .settings import Settings
from .tokens import (
    CLIENT_ID,
    ISSUER,
    RequestRefused,
    Signer,
    TokenRefused,
    load_or_make_key,
    load_or_make_secret,
)

DEFAULT_TTL_S = 300
DEFAULT_SUBJECT = "learner"
MAX_FORM_BYTES = 4096
REALM = 'Bearer realm="lab"'


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


def _oauth_error(status: int, error: str, description: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={"Cache-Control": "no-store", **headers})


def _client_secret(header: str | None) -> str | None:
    """The secret of client "lab" from an HTTP Basic Authorization header; None otherwise."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client, _, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return secret if client == CLIENT_ID else None


def build(settings: Settings, lifecycle: Lifecycle, signer: Signer, secret: str) -> Starlette:
    async def token(request: Request) -> Response:
        given = _client_secret(request.headers.get("authorization"))
        if given is None or not hmac.compare_digest(given.encode(), secret.encode()):
            return _oauth_error(401, "invalid_client",
                                f"client {CLIENT_ID!r} with its secret (HTTP Basic) required",
                                **{"WWW-Authenticate": 'Basic realm="lab"'})
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return _oauth_error(413, "invalid_request", f"at most {MAX_FORM_BYTES} bytes")
        form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "grant_type must be "
                                "client_credentials")
        try:
            ttl_s = float(form.get("ttl", DEFAULT_TTL_S))
        except ValueError:
            return _oauth_error(400, "invalid_request",
                                f"ttl must be a number of seconds, got {form['ttl']!r}")
        try:
            issued, lifetime = signer.issue(form.get("scope", "").split(), ttl_s,
                                            form.get("subject", DEFAULT_SUBJECT))
        except RequestRefused as refused:
            return _oauth_error(400, refused.error, str(refused))
        return JSONResponse({"access_token": issued, "token_type": "Bearer",
                             "expires_in": lifetime, "scope": form["scope"]},
                            headers={"Cache-Control": "no-store"})

    async def verify(request: Request) -> Response:
        scope = request.query_params.get("scope", "")
        if scope not in signer.scopes:
            # the gateway's configuration names no scope we know: refuse everyone (fail closed)
            return JSONResponse({"error": f"the route requires an unknown scope {scope!r}"},
                                status_code=500)
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return JSONResponse({"error": "no token", "detail": "send Authorization: Bearer "
                                 "<token>"}, status_code=401, headers={"WWW-Authenticate": REALM})
        try:
            identity = signer.verify(credentials.strip(), scope)
        except TokenRefused as refused:
            challenge = (f'{REALM}, error="{refused.error}", '
                         f'error_description="{_quoted(str(refused))}"')
            if refused.status == 403:
                challenge += f', scope="{scope}"'
            return JSONResponse({"error": refused.error, "detail": str(refused)},
                                status_code=refused.status,
                                headers={"WWW-Authenticate": challenge})
        return Response(status_code=200, headers={
            SUBJECT_HEADER: identity.subject, SCOPES_HEADER: " ".join(identity.scopes)})

    async def jwks(_: Request) -> Response:
        return JSONResponse({"keys": [signer.jwk]})

    about = {"issuer": ISSUER, "token_endpoint": "/token", "jwks_uri": "/.well-known/jwks.json",
             "grant_types_supported": ["client_credentials"], "verify_endpoint": "/verify",
             "scopes_supported": list(signer.scopes)}

    async def home(_: Request) -> Response:
        return JSONResponse(about)

    return create_app(lifecycle, [
        Route("/", home),
        Route("/token", token, methods=["POST"]),
        Route("/verify", verify),
        Route("/.well-known/jwks.json", jwks),
    ])


def main() -> None:
    settings = bootstrap(needs=("LAB_ADMIN_PORT", "LAB_AUTH_DIR", "LAB_AUTH_SCOPES"))
    folder = Path(os.environ["LAB_AUTH_DIR"])
    try:
        signer = Signer(load_or_make_key(folder), os.environ["LAB_AUTH_SCOPES"].split())
        secret = load_or_make_secret(folder)
    except (OSError, ValueError) as exc:
        print(f"labstack.auth: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    lifecycle = Lifecycle(settings, **http_urls(settings))
    serve_http(build(settings, lifecycle, signer, secret), settings, lifecycle)


if __name__ == "__main__":
    main()
