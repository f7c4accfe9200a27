"""Authentication at the gateway: the scopes that exist, and how Traefik asks the auth service.

    traefik/http/routers/auth-verify/...                   http://<gateway>/verify: the calls
                                                           Traefik's forwardAuth makes, routed
                                                           to the auth instances (labkit, at up)
    traefik/http/middlewares/lab-identity/headers/...      the web entry point removes every
                                                           client's X-Auth-* headers (labkit, at
                                                           up): only the auth service sets them
    traefik/http/middlewares/<service>-auth/forwardAuth/   a protected service (lab.policies
                                                           .require, see labkit.policy_keys)

The forwardAuth calls go through the gateway rather than to one instance's address: they are
balanced over the auth instances, health-checked like any route, and bounded by the auth load
balancer's timeout (lab.policies.timeout("auth", ...)); Traefik's own limit for them is 30 s.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from labstack.identity import SCOPES_HEADER, SUBJECT_HEADER

from . import keyspace
from .errors import LabError
from .topology import SERVICES, infra

SERVICE = "auth"  # the service in labkit.topology that issues and verifies tokens
ACTIONS = ("read", "write")
VERIFY_PATH = "/verify"
VERIFY_ROUTER = "auth-verify"
IDENTITY_MIDDLEWARE = "lab-identity"
IDENTITY_HEADERS = (SUBJECT_HEADER, SCOPES_HEADER)
CREDENTIALS_HEADER = "Authorization"  # the one request header the auth service is sent
MAX_AUTH_RESPONSE_BYTES = 4096  # a refusal's body, passed on to the client; ours are < 300


def scopes() -> tuple[str, ...]:
    """Every scope a token may carry and a route require: "<service>:read" and ":write"."""
    return tuple(f"{name}:{action}" for name in SERVICES if name != SERVICE
                 for action in ACTIONS)


def check_scope(scope: object) -> str:
    """`scope` if it exists, else a LabError listing the valid ones."""
    if not isinstance(scope, str) or scope not in scopes():
        raise LabError(f"unknown scope {scope!r}; valid scopes: {', '.join(scopes())}")
    return scope


def state_folder(state: Path) -> Path:
    """Where the auth service keeps its signing key and client secret (owner only)."""
    return state / SERVICE


def instance_environment(state: Path) -> dict[str, str]:
    """What an auth instance needs beyond every service's LAB_* variables."""
    return {"LAB_AUTH_DIR": str(state_folder(state)), "LAB_AUTH_SCOPES": " ".join(scopes())}


def gateway_keys() -> dict[str, str]:
    """The verify route and the identity-stripping middleware, written with the routes."""
    strip = f"{keyspace.middleware(IDENTITY_MIDDLEWARE)}/headers/customRequestHeaders"
    keys = {f"{strip}/{header}": "" for header in IDENTITY_HEADERS}  # "": remove the header
    router = keyspace.router(VERIFY_ROUTER)
    keys.update({
        f"{router}/rule": f"Host(`{infra().gateway.host}`) && Path(`{VERIFY_PATH}`)",
        f"{router}/service": SERVICE,
        f"{router}/entryPoints/0": "web",
    })  # fmt: skip
    return keys


def entry_point_middlewares() -> list[str]:
    """What Traefik's web entry point applies to every request, before any router's own."""
    return [f"{IDENTITY_MIDDLEWARE}@etcd"]


def forward_auth(scope: str, gateway_url: str) -> dict[str, str]:
    """A forwardAuth middleware's settings that let through requests whose token grants
    `scope`, with the verified identity in IDENTITY_HEADERS; the calls go to the verify route
    of the gateway at `gateway_url`."""
    settings = {
        "address": f"{gateway_url}{VERIFY_PATH}?scope={check_scope(scope)}",
        "trustForwardHeader": "false",  # the client's X-Forwarded-* are not the auth's input
        "authRequestHeaders/0": CREDENTIALS_HEADER,
        "maxResponseBodySize": str(MAX_AUTH_RESPONSE_BYTES),
    }
    settings.update({f"authResponseHeaders/{i}": h for i, h in enumerate(IDENTITY_HEADERS)})
    return settings


def scope_of(address: str) -> str:
    """The scope a forwardAuth address asks for ("" if none)."""
    return parse_qs(urlsplit(address).query).get("scope", [""])[0]
