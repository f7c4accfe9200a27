"""The admin API: read and change an instance's injected faults and telemetry settings, for
loopback callers that present the lab's admin token only.

It listens on LAB_HOST:LAB_ADMIN_PORT, apart from the service port, so the
gateway never routes to it and its requests never show up in RED metrics.

    GET    /admin/faults  -> 200 state
    PUT    /admin/faults  -> 200 state; body: a partial update, e.g.
                             {"latency": {"ms": 200, "jitter_ms": 50, "distribution": "uniform"},
                              "error_rate": 0.1, "unready": false,
                              "leak_mb_per_s": 10, "cpu_burn": 0.5}   (latency null clears it)
    DELETE /admin/faults  -> 200 state, every fault cleared (a running slow start too)
    GET    /admin/telemetry -> 200 {"sample", "keep_slower_than_ms", "log_level"}
    PUT    /admin/telemetry -> 200 the same, after a partial update (labstack.sampling)

state = {"latency": {...} | null, "error_rate", "unready", "leak_mb_per_s", "cpu_burn",
         "slow_start_remaining_s", "ready", "leaked_mb", "instance"}. Errors are
{"error": "..."}: 400 invalid body (nothing changed), 403 caller outside 127.0.0.0/8,
401 no `Authorization: Bearer <token>`, 403 another token, 404 another path, 405 another method.

The token is the lab's (labkit writes it at `up` into its state folder, owner-only), read once
at start from the file LAB_ADMIN_TOKEN_FILE names: being on loopback is not enough, since
every local user's processes are there too.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .faults import FaultError, FaultState, parse_update
from .jsonhttp import JsonHandler
from .logs import describe_error
from .sampling import CONTROL, SettingsRefused
from .settings import Settings

log = logging.getLogger("labstack.admin")

FAULTS = "/admin/faults"
TELEMETRY = "/admin/telemetry"
MAX_BODY = 4096  # bytes; a valid update is well under 200
REQUEST_TIMEOUT = 5.0  # seconds a client may take to send its request before its thread is freed
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
BEARER = "Bearer "


def is_loopback(address: str) -> bool:
    """Whether a client address is in 127.0.0.0/8 (also written as IPv4-mapped IPv6)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip in LOOPBACK


def start_admin(
    settings: Settings, faults: FaultState, status: Callable[[], dict[str, Any]]
) -> None:
    """Serve the admin API from a daemon thread; exit 1 if its address cannot be bound."""
    assert settings.admin_port is not None and settings.admin_token_file is not None
    where = f"{settings.host}:{settings.admin_port}"
    try:
        token = read_token(settings.admin_token_file)
        server = ThreadingHTTPServer(
            (settings.host, settings.admin_port), _handler(settings, faults, status, token)
        )
    except OSError as exc:
        error = describe_error(exc)
        log.error("cannot serve the admin API", extra={"address": where, "error": error})
        raise SystemExit(1) from None
    threading.Thread(target=server.serve_forever, name="admin", daemon=True).start()
    log.info("admin API serving", extra={"address": where})


def read_token(path: str) -> str:
    """The lab's admin token from `path`; an OSError if it is missing or empty."""
    with open(path, encoding="ascii") as file:
        token = file.read().strip()
    if not token:
        raise OSError(f"{path} is empty")
    return token


def _handler(
    settings: Settings, faults: FaultState, status: Callable[[], dict[str, Any]], token: str
) -> type[JsonHandler]:
    def state() -> dict[str, Any]:
        return {**faults.describe(), **status(), "instance": settings.instance_id}

    class Handler(JsonHandler):
        timeout = REQUEST_TIMEOUT

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            resource = self._resource()
            if resource == FAULTS:
                self._send(200, state())
            elif resource == TELEMETRY:
                self._send(200, CONTROL.describe())

        def do_PUT(self) -> None:  # noqa: N802
            resource = self._resource()
            if resource is None:
                return
            try:
                body = self._body()
                if resource == FAULTS:
                    self._changed("faults changed", *faults.update(parse_update(body)))
                else:
                    old, new = CONTROL.update(_json(body))
                    log.info("telemetry settings changed", extra={"old": old, "new": new})
                    self._send(200, new)
            except (FaultError, SettingsRefused) as exc:
                self._send(400, {"error": str(exc)})

        def do_DELETE(self) -> None:  # noqa: N802
            resource = self._resource()
            if resource == FAULTS:
                self._changed("faults cleared", *faults.clear())
            elif resource == TELEMETRY:
                self._refuse_method()

        def do_POST(self) -> None:  # noqa: N802
            if self._resource() is not None:
                self._refuse_method()

        do_PATCH = do_POST  # noqa: N815

        def _refuse_method(self) -> None:
            self._send(405, {"error": f"use GET, PUT or DELETE on {FAULTS}; GET or PUT on "
                                      f"{TELEMETRY}"})

        def _resource(self) -> str | None:
            """The path of a loopback caller with the lab's token on one of the API's paths;
            anything else is answered here (None)."""
            if not is_loopback(self.client_address[0]):
                self._send(403, {"error": "the admin API answers 127.0.0.0/8 clients only"})
                return None
            presented = self.headers.get("Authorization", "")
            if not presented.startswith(BEARER):
                self._send(401, {"error": "the admin API needs the lab's admin token: "
                                          "Authorization: Bearer <token>"})
                return None
            if not hmac.compare_digest(presented[len(BEARER):].encode(), token.encode()):
                self._send(403, {"error": "wrong admin token: not this lab's"})
                return None
            path = urlsplit(self.path).path
            if path not in (FAULTS, TELEMETRY):
                self._send(404, {"error": f"not found; the admin API is {FAULTS} and "
                                          f"{TELEMETRY}"})
                return None
            return path

        def _body(self) -> bytes:
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise FaultError("Content-Length must be a number of bytes") from None
            if not 0 <= length <= MAX_BODY:
                raise FaultError(f"the body must be at most {MAX_BODY} bytes")
            return self.rfile.read(length)

        def _changed(self, message: str, old: dict[str, Any], new: dict[str, Any]) -> None:
            log.info(message, extra={"old": old, "new": new, "client": self.client_address[0]})
            self._send(200, state())

    return Handler


def _json(body: bytes) -> object:
    try:
        return json.loads(body or b"null")
    except ValueError:
        raise SettingsRefused("the body must be JSON") from None
