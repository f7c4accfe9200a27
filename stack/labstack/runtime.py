"""What every service shares: start-up from the environment, readiness, ordered shutdown.

Shutdown order (SIGTERM or SIGINT), the same for HTTP and gRPC services:
  1. not ready: /ready answers 503, gRPC health NOT_SERVING;
  2. deregister: revoke the lease, so the gateway drops this server at once;
  3. drain for LAB_DRAIN_SECONDS, so requests already routed here still arrive;
  4. stop the server, letting in-flight requests finish; exit 0.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Mapping

from .logs import configure_logging
from .metrics import publish_identity
from .registration import Registration
from .settings import Settings, SettingsError

GRACE_SECONDS = 5.0  # longest an in-flight request may hold up the exit
STARTUP_TIMEOUT = 10.0  # longest a server may take to start listening

log = logging.getLogger("labstack")


def bootstrap(*, needs: Iterable[str] = (), defaults: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, JSON logging and the identity metric; exit 2 if invalid."""
    try:
        settings = Settings.from_env(needs=needs, defaults=defaults)
    except SettingsError as exc:
        print(f"labstack: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings)
    publish_identity(settings)
    return settings


class Lifecycle:
    """Readiness and registration of one instance; both HTTP and gRPC servers drive it."""

    def __init__(self, settings: Settings, *, url: str, metrics_url: str) -> None:
        self.settings = settings
        self._ready = threading.Event()
        self.registration = Registration(
            settings, url=url, metrics_url=metrics_url, ready=self._ready.is_set
        )

    def is_ready(self) -> bool:
        return self._ready.is_set()

    def serving(self) -> None:
        """The socket is listening: become ready and register."""
        self._ready.set()
        log.info("serving", extra={"address": self.settings.address})
        self.registration.start()

    def withdraw(self) -> None:
        """Steps 1-3 of the shutdown order (blocking)."""
        log.info("shutdown: not ready, deregistering")
        self._ready.clear()
        self.registration.deregister()
        log.info("shutdown: draining", extra={"seconds": self.settings.drain_seconds})
        time.sleep(self.settings.drain_seconds)
