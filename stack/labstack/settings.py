"""A service's configuration, read once from LAB_* environment variables."""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_SLOT = 10
# What a release file (LAB_RELEASE_FILE, written by labkit before it starts a slot) may change:
# the version this slot runs, instead of the service's declared one.
RELEASE_VARIABLES = ("LAB_VERSION", "LAB_TEXT", "LAB_NEVER_READY")
# The etcd keys an instance registers under, as labkit's key layout (labkit/keyspace.py) gives
# them: LAB_SERVER_KEYS (space-separated) and LAB_REGISTRY_KEY, with these fields to fill in.
REGISTRATION_VARIABLES = ("LAB_SERVER_KEYS", "LAB_REGISTRY_KEY")
# What the lab's telemetry file (LAB_TELEMETRY_FILE, labkit.telemetry_settings) may set: the
# same for every instance, and changed live through the admin API (labstack.sampling).
TELEMETRY_VARIABLES = ("LAB_TRACE_SAMPLE", "LAB_TRACE_KEEP_SLOWER_MS", "LAB_LOG_LEVEL")
# LAB_LOG_LEVEL: the least severe record a service writes (stdout and the telemetry store)
LOG_LEVELS = ("debug", "info", "warning", "error")
KEY_FIELDS = ("version", "pid")


class SettingsError(Exception):
    """One or more LAB_* variables are missing or invalid; the message names each."""


@dataclass(frozen=True)
class Settings:
    service: str
    slot: int
    version: str
    host: str
    port: int
    etcd_host: str
    etcd_port: int
    lease_ttl: int = 3
    drain_seconds: float = 0.3
    metrics_port: int | None = None
    admin_port: int | None = None
    admin_token_file: str | None = None  # the lab's admin token (labkit writes it at `up`)
    faults_file: str | None = None
    gateway: str | None = None
    text: str = "hello"
    otlp_endpoint: str | None = None  # the telemetry store (OTLP/HTTP); None: export nothing
    trace_sample: float = 1.0  # share of new traces kept (traced callers' choices are kept)
    trace_keep_slower_ms: float = 1000.0  # an unsampled request this slow is recorded anyway
    log_level: str = "info"  # LAB_LOG_LEVEL; successful requests log at debug only
    never_ready: bool = False  # a bad build: alive, but never passes readiness
    server_keys: tuple[str, ...] = ()  # where to publish this instance's URL ({version}, {pid})
    registry_key: str | None = None  # where to write its registry record ({version}, {pid})
    registry_prefix: str | None = None  # under which every registry record lives (promsd)
    tls_dir: str | None = None  # the lab's TLS files: mTLS or not, and this slot's certificate

    @property
    def instance_id(self) -> str:
        return f"{self.service}-{self.slot}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        needs: Iterable[str] = (),
        defaults: Mapping[str, str] | None = None,
    ) -> Settings:
        """Settings from `env` (default os.environ).

        `needs` names optional variables this service cannot run without
        (e.g. LAB_GATEWAY for web); `defaults` fills variables a service does
        not care about (promsd has no slot). Every problem is reported at once.
        """
        source = {**(defaults or {}), **(os.environ if env is None else env)}
        reader = _Reader(source)
        source.update(reader.overrides("LAB_RELEASE_FILE", RELEASE_VARIABLES))
        source.update(reader.overrides("LAB_TELEMETRY_FILE", TELEMETRY_VARIABLES))
        for name in needs:
            reader.text(name)
        etcd_host, etcd_port = reader.url_host_port("LAB_ETCD")
        settings = cls(
            service=reader.text("LAB_SERVICE"),
            slot=reader.integer("LAB_SLOT", low=1, high=MAX_SLOT),
            version=reader.text("LAB_VERSION"),
            host=reader.text("LAB_HOST"),
            port=reader.integer("LAB_PORT", low=1, high=65535),
            etcd_host=etcd_host,
            etcd_port=etcd_port,
            lease_ttl=reader.integer("LAB_LEASE_TTL", low=1, high=3600, default=3),
            drain_seconds=reader.seconds("LAB_DRAIN_SECONDS", default=0.3),
            metrics_port=reader.optional_port("LAB_METRICS_PORT"),
            admin_port=reader.optional_port("LAB_ADMIN_PORT"),
            admin_token_file=source.get("LAB_ADMIN_TOKEN_FILE", "").strip() or None,
            faults_file=source.get("LAB_FAULTS_FILE", "").strip() or None,
            gateway=reader.optional_url("LAB_GATEWAY"),
            text=source.get("LAB_TEXT", "hello"),
            otlp_endpoint=reader.optional_url("LAB_OTLP_ENDPOINT"),
            trace_sample=reader.ratio("LAB_TRACE_SAMPLE", default=1.0),
            trace_keep_slower_ms=reader.number("LAB_TRACE_KEEP_SLOWER_MS", default=1000.0,
                                               high=60_000, what="a number of milliseconds"),
            log_level=reader.choice("LAB_LOG_LEVEL", LOG_LEVELS, default="info"),
            never_ready=source.get("LAB_NEVER_READY", "") == "1",
            server_keys=tuple(reader.key_template("LAB_SERVER_KEYS").split()),
            registry_key=reader.key_template("LAB_REGISTRY_KEY") or None,
            registry_prefix=source.get("LAB_REGISTRY_PREFIX", "").strip() or None,
            tls_dir=source.get("LAB_TLS_DIR", "").strip() or None,
        )
        if settings.admin_port and settings.admin_port in (settings.port, settings.metrics_port):
            # The admin API must never be reachable where the gateway or Prometheus send traffic.
            reader.problems.append("LAB_ADMIN_PORT must differ from LAB_PORT and LAB_METRICS_PORT")
        if settings.admin_port and not settings.admin_token_file:
            # fail closed: an admin API without a token would answer any local process
            reader.problems.append("LAB_ADMIN_TOKEN_FILE must name the file holding the admin "
                                   "API's token (labkit writes it at `up`)")
        if reader.problems:
            raise SettingsError("invalid service configuration: " + "; ".join(reader.problems))
        return settings


class _Reader:
    """Parses variables, collecting problems instead of stopping at the first."""

    def __init__(self, source: Mapping[str, str]) -> None:
        self.source = source
        self.problems: list[str] = []

    def overrides(self, name: str, allowed: tuple[str, ...]) -> dict[str, str]:
        """The variables set by the JSON file that variable `name` names (some of `allowed`,
        as strings); none when unset or when there is no file."""
        path = self.source.get(name, "").strip()
        if not path:
            return {}
        try:
            with open(path, encoding="utf-8") as file:
                found = json.load(file)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.problems.append(f"{name} {path} is unreadable: {exc}")
            return {}
        valid = isinstance(found, dict) and all(
            k in allowed and isinstance(v, str) for k, v in found.items()
        )
        if not valid:
            self.problems.append(f"{name} {path} must map some of "
                                 f"{', '.join(allowed)} to strings, got {found!r}")
            return {}
        return found

    def choice(self, name: str, choices: tuple[str, ...], *, default: str) -> str:
        raw = self.source.get(name, "").strip().lower()
        if not raw:
            return default
        if raw not in choices:
            self.problems.append(f"{name} must be one of {', '.join(choices)}, "
                                 f"got {self.source[name]!r}")
            return default
        return raw

    def text(self, name: str) -> str:
        value = self.source.get(name, "").strip()
        if not value:
            self.problems.append(f"{name} is not set")
        return value

    def integer(self, name: str, *, low: int, high: int, default: int | None = None) -> int:
        raw = self.source.get(name, "").strip()
        if not raw and default is not None:
            return default
        if not raw:
            self.problems.append(f"{name} is not set")
            return low
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            self.problems.append(f"{name} must be a whole number in {low}..{high}, got {raw!r}")
            return low
        return value

    def seconds(self, name: str, *, default: float) -> float:
        return self.number(name, default=default, high=60, what="a number of seconds")

    def ratio(self, name: str, *, default: float) -> float:
        return self.number(name, default=default, high=1, what="a number")

    def number(self, name: str, *, default: float, high: float, what: str) -> float:
        """A number in 0..high; `default` when unset or invalid (the problem is recorded)."""
        raw = self.source.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 <= value <= high:
            self.problems.append(f"{name} must be {what} in 0..{high:g}, got {raw!r}")
            return default
        return value

    def key_template(self, name: str) -> str:
        """Etcd keys that may name {version} and {pid}; "" when unset."""
        raw = self.source.get(name, "").strip()
        try:
            fields = {part[1] for part in string.Formatter().parse(raw) if part[1] is not None}
        except ValueError:  # unbalanced braces
            fields = {""}
        if fields - set(KEY_FIELDS):
            self.problems.append(f"{name} may only use {{version}} and {{pid}}, got {raw!r}")
            return ""
        return raw

    def optional_port(self, name: str) -> int | None:
        if not self.source.get(name, "").strip():
            return None
        return self.integer(name, low=1, high=65535)

    def optional_url(self, name: str) -> str | None:
        if not self.source.get(name, "").strip():
            return None
        self.url_host_port(name)
        return self.source[name].strip().rstrip("/")

    def url_host_port(self, name: str) -> tuple[str, int]:
        raw = self.text(name)
        if not raw:
            return "", 0
        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or parts.scheme != "http" or not parts.hostname or port is None:
            self.problems.append(f"{name} must look like http://HOST:PORT, got {raw!r}")
            return "", 0
        return parts.hostname, port
