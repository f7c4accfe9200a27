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
from collections.abc import Callable, Iterable, Mapping

from . import admin, tls
from .faults import FaultState, parse_faults_file
from .hog import Hog
from .logs import configure_logging, describe_error
from .metrics import publish_identity
from .otel import configure_telemetry
from .registration import Registration
from .sampling import CONTROL
from .settings import REGISTRATION_VARIABLES, Settings, SettingsError

GRACE_SECONDS = 5.0  # longest an in-flight request may hold up the exit
STARTUP_TIMEOUT = 10.0  # longest a server may take to start listening

log = logging.getLogger("labstack")


def bootstrap(*, needs: Iterable[str] = (), defaults: Mapping[str, str] | None = None,
              registers: bool = True) -> Settings:
    """Settings from the environment, JSON logging and the identity metric; exit 2 if invalid.
    An instance that `registers` needs the keys to register under (LAB_SERVER_KEYS, ...)."""
    needs = (*(REGISTRATION_VARIABLES if registers else ()), *needs)
    try:
        settings = Settings.from_env(needs=needs, defaults=defaults)
    except SettingsError as exc:
        print(f"labstack: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings)
    CONTROL.configure(settings.trace_sample, settings.trace_keep_slower_ms, settings.log_level)
    configure_telemetry(settings)
    publish_identity(settings)
    return settings


def read_slow_start(path: str | None) -> float:
    """Seconds of slow start asked for by LAB_FAULTS_FILE; none if the file does not exist.

    A bad file is logged and ignored: an instance must never crash-loop on it.
    """
    if path is None:
        return 0.0
    try:
        with open(path, encoding="utf-8") as file:
            return parse_faults_file(file.read())
    except FileNotFoundError:
        return 0.0
    except (OSError, ValueError) as exc:  # FaultError and UnicodeDecodeError are ValueErrors
        log.error("ignoring the faults file", extra={"file": path, "error": describe_error(exc)})
        return 0.0


class Lifecycle:
    """Readiness and registration of one instance; both HTTP and gRPC servers drive it.

    Ready means listening, not shutting down, not `unready`, past any slow start, and not
    a bad build (LAB_NEVER_READY).
    Every change of the faults is passed on at once to the registration (which
    withdraws or registers) and to the watchers (gRPC health).
    """

    def __init__(self, settings: Settings, *, url: str, metrics_url: str) -> None:
        self.settings = settings
        self.tls = tls.files(settings)  # mTLS or not is decided once, at start
        self._listening = threading.Event()  # set from serving() until withdraw()
        self._watchers: list[Callable[[], None]] = []
        self.faults = FaultState(on_change=self._changed)
        self.hog = Hog(self.faults)
        self._watchers.append(self.hog.wake)
        self.slow_start_s = read_slow_start(settings.faults_file)
        self.registration = Registration(
            settings, url=url, metrics_url=metrics_url, ready=self.is_ready
        )

    def is_ready(self) -> bool:
        return self._listening.is_set() and self.faults.ready() and not self.settings.never_ready

    def status(self) -> dict[str, object]:
        """What the admin API adds to the faults: readiness, and memory a leak holds."""
        return {"ready": self.is_ready(), "leaked_mb": round(self.hog.leaked_mb, 1)}

    def watch(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever readiness may have changed."""
        self._watchers.append(callback)

    def start_admin(self) -> None:
        """Serve the admin API; called before the service listens, so a taken port fails fast."""
        admin.start_admin(self.settings, self.faults, self.status)

    def serving(self) -> None:
        """The socket is listening: become ready (after any slow start) and register."""
        self.faults.start_slow_start(self.slow_start_s)
        self._listening.set()
        log.info(
            "serving", extra={"address": self.settings.address, "slow_start_s": self.slow_start_s}
        )
        if self.slow_start_s:
            timer = threading.Timer(self.slow_start_s, self._end_slow_start)
            timer.daemon = True
            timer.start()
        self.registration.start()
        self._changed()

    def withdraw(self) -> None:
        """Steps 1-3 of the shutdown order (blocking)."""
        log.info("shutdown: not ready, deregistering")
        self._listening.clear()
        self.registration.deregister()
        log.info("shutdown: draining", extra={"seconds": self.settings.drain_seconds})
        time.sleep(self.settings.drain_seconds)

    def _end_slow_start(self) -> None:
        if self.faults.end_slow_start():  # False if DELETE /admin/faults ended it earlier
            log.info("slow start over", extra={"seconds": self.slow_start_s})

    def _changed(self) -> None:
        self.registration.wake()
        for callback in self._watchers:
            callback()
