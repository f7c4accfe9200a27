"""Injected faults of one instance: their state, the validation of changes, per-request sampling.

No I/O here: the admin API (admin.py) changes the state, the HTTP middleware and the
gRPC interceptor ask `plan()` what to do to each request, and readiness (runtime.py)
reads `ready()`. HTTP and gRPC services therefore share one definition of every fault.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, NamedTuple

from .metrics import INJECTED

FIELDS = ("latency", "error_rate", "unready", "leak_mb_per_s", "cpu_burn")
LATENCY_FIELDS = ("ms", "jitter_ms", "distribution")
DISTRIBUTIONS = ("fixed", "uniform", "exponential")
FILE_FIELDS = ("slow_start_s",)
MAX_LATENCY_MS = 60_000  # a minute: longer would only hold requests until clients give up
MAX_SLOW_START_S = 600
MAX_LEAK_MB_PER_S = 100
MAX_LEAKED_MB = 1024  # a leak stops growing here: without a memory limit it is the machine's


class FaultError(ValueError):
    """An invalid fault change or faults file; the message says what was wrong and what is valid."""


@dataclass(frozen=True)
class Latency:
    ms: float
    jitter_ms: float = 0.0
    distribution: str = "fixed"

    def sample_s(self, rng: random.Random) -> float:
        """One delay in seconds: fixed = ms; uniform = ms ± jitter_ms; exponential = mean ms."""
        if self.distribution == "uniform":
            ms = rng.uniform(self.ms - self.jitter_ms, self.ms + self.jitter_ms)
        elif self.distribution == "exponential":
            ms = rng.expovariate(1 / self.ms) if self.ms else 0.0
        else:
            ms = self.ms
        return min(max(ms, 0.0), MAX_LATENCY_MS) / 1000


@dataclass(frozen=True)
class Faults:
    latency: Latency | None = None
    error_rate: float = 0.0
    unready: bool = False
    leak_mb_per_s: float = 0.0  # memory held and never freed while the fault lasts
    cpu_burn: float = 0.0  # the share of one core a busy thread takes (with the GIL)


class Plan(NamedTuple):
    """What to do to one request: wait `delay_s`, then fail it or not."""

    delay_s: float
    fail: bool


def parse_update(body: bytes | str) -> dict[str, Any]:
    """The changes a PUT body asks for, all validated: FaultError before anything changes."""
    update = _json_object(body, "the body", FIELDS)
    changes: dict[str, Any] = {}
    for name, value in update.items():
        if name == "latency":
            changes[name] = None if value is None else _latency(value)
        elif name == "error_rate":
            changes[name] = _number(value, "error_rate", 0, 1)
        elif name == "leak_mb_per_s":
            changes[name] = _number(value, "leak_mb_per_s", 0, MAX_LEAK_MB_PER_S)
        elif name == "cpu_burn":
            changes[name] = _number(value, "cpu_burn", 0, 1)
        elif isinstance(value, bool):
            changes[name] = value
        else:
            raise FaultError(f"unready must be true or false, got {json.dumps(value)}")
    return changes


def parse_faults_file(text: str) -> float:
    """The slow start, in seconds, that a faults file asks for ({} means none)."""
    content = _json_object(text, "the faults file", FILE_FIELDS)
    return _number(content.get("slow_start_s", 0), "slow_start_s", 0, MAX_SLOW_START_S)


def _json_object(text: bytes | str, what: str, fields: tuple[str, ...]) -> dict[str, Any]:
    valid = ", ".join(fields)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        problem = f"{what} is not valid JSON ({exc}); send an object with any of {valid}"
        raise FaultError(problem) from None
    if not isinstance(value, dict):
        raise FaultError(f"{what} must be a JSON object with any of {valid}, got {_kind(value)}")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise FaultError(f"unknown field {names} in {what}; valid fields: {valid}")
    return value


def _latency(value: Any) -> Latency:
    example = '{"ms": 200, "jitter_ms": 50, "distribution": "uniform"}'
    if not isinstance(value, dict):
        raise FaultError(f"latency must be an object like {example} or null, got {_kind(value)}")
    unknown = sorted(set(value) - set(LATENCY_FIELDS))
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise FaultError(f"unknown latency field {names}; valid: {', '.join(LATENCY_FIELDS)}")
    if "ms" not in value:
        raise FaultError(f"latency needs ms, e.g. {example}")
    distribution = value.get("distribution", "fixed")
    if distribution not in DISTRIBUTIONS:
        raise FaultError(
            f"latency.distribution must be one of {', '.join(DISTRIBUTIONS)}, "
            f"got {json.dumps(distribution)}"
        )
    return Latency(
        ms=_number(value["ms"], "latency.ms", 0, MAX_LATENCY_MS),
        jitter_ms=_number(value.get("jitter_ms", 0), "latency.jitter_ms", 0, MAX_LATENCY_MS),
        distribution=distribution,
    )


def _number(value: Any, name: str, low: float, high: float) -> float:
    # bool is an int in Python, but `true` is not a number in JSON; NaN fails the range test.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise FaultError(f"{name} must be a number in {low:g}..{high:g}, got {json.dumps(value)}")
    return float(value)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), "a number")


class FaultState:
    """The faults of one instance; safe to use from any thread.

    `on_change` runs after every change (outside the lock), so readiness
    watchers react at once instead of at their next poll.
    """

    def __init__(
        self,
        on_change: Callable[[], None] = lambda: None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._on_change = on_change
        self._rng = rng or random.Random()
        self._clock = clock
        self._lock = threading.Lock()
        self._faults = Faults()  # immutable: readers take it without the lock
        self._slow_start_until: float | None = None

    def update(self, changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply changes from `parse_update`; returns the state before and after."""
        with self._lock:
            old = self.describe()
            self._faults = replace(self._faults, **changes)
            new = self.describe()
        self._on_change()
        return old, new

    def clear(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Clear every fault, a running slow start included; returns the state before and after."""
        with self._lock:
            old = self.describe()
            self._faults, self._slow_start_until = Faults(), None
            new = self.describe()
        self._on_change()
        return old, new

    def start_slow_start(self, seconds: float) -> None:
        """Not ready for `seconds` from now (called once the service listens)."""
        with self._lock:
            self._slow_start_until = self._clock() + seconds if seconds > 0 else None

    def end_slow_start(self) -> bool:
        """End the slow start now; False if none was running (a DELETE ended it already)."""
        with self._lock:
            running, self._slow_start_until = self._slow_start_until is not None, None
        if running:
            self._on_change()
        return running

    def slow_start_remaining(self) -> float:
        until = self._slow_start_until
        return 0.0 if until is None else max(until - self._clock(), 0.0)

    def ready(self) -> bool:
        """False while `unready` is set or a slow start is running."""
        return not self._faults.unready and self.slow_start_remaining() == 0

    def current(self) -> Faults:
        return self._faults

    def describe(self) -> dict[str, Any]:
        faults = self._faults
        return {
            "latency": asdict(faults.latency) if faults.latency else None,
            "error_rate": faults.error_rate,
            "unready": faults.unready,
            "leak_mb_per_s": faults.leak_mb_per_s,
            "cpu_burn": faults.cpu_burn,
            "slow_start_remaining_s": round(self.slow_start_remaining(), 3),
        }

    def plan(self) -> Plan:
        """Sample the faults for one request, counting each injected one."""
        faults = self._faults
        delay = faults.latency.sample_s(self._rng) if faults.latency else 0.0
        fail = self._rng.random() < faults.error_rate  # random() < 1.0 always; < 0.0 never
        if faults.latency:
            INJECTED.labels("latency").inc()
        if fail:
            INJECTED.labels("error").inc()
        return Plan(delay, fail)
