"""The instance's telemetry settings, changeable while it runs (the admin API's /telemetry).

- the trace sampler for traces this instance starts itself (a caller without trace
  context); a caller's decision is always kept (ParentBased, in labstack.otel), so the lab's
  sampling is decided where a request enters and every hop agrees;
- the log level of the whole process.

One per process, like the OpenTelemetry providers it feeds: CONTROL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

LOG_LEVELS = ("debug", "info", "warning", "error")
_TRACE_ID_LIMIT = (1 << 64) - 1  # the low 64 bits of the trace id decide, as in the SDK's


class SettingsRefused(ValueError):
    """A change the instance will not make; the message says what is valid."""


class LiveRatioSampler(Sampler):
    """TraceIdRatioBased whose ratio can change while spans are being started."""

    def __init__(self, rate: float) -> None:
        self.set_rate(rate)

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self._bound = round(rate * (_TRACE_ID_LIMIT + 1))

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None, trace_state: Any = None,
                      ) -> SamplingResult:
        if trace_id & _TRACE_ID_LIMIT < self._bound:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return SamplingResult(Decision.DROP)

    def get_description(self) -> str:
        return f"LiveRatioSampler{{{self.rate}}}"


class TelemetryControl:
    def __init__(self) -> None:
        self.sampler = LiveRatioSampler(1.0)
        self._lock = threading.Lock()

    def configure(self, sample: float, log_level: str) -> None:
        self.update({"sample": sample, "log_level": log_level})

    def describe(self) -> dict[str, Any]:
        level = logging.getLevelName(logging.getLogger().level).lower()
        return {"sample": self.sampler.rate, "log_level": level}

    def update(self, changes: object) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply a partial change (all checked first: nothing changes on a refusal);
        returns the settings before and after."""
        sample, level = _parse(changes)
        with self._lock:
            old = self.describe()
            if sample is not None:
                self.sampler.set_rate(sample)
            if level is not None:
                logging.getLogger().setLevel(level.upper())
            return old, self.describe()


def _parse(changes: object) -> tuple[float | None, str | None]:
    if not isinstance(changes, dict) or not changes:
        raise SettingsRefused("send a JSON object with sample, log_level or both")
    unknown = sorted(set(changes) - {"sample", "log_level"})
    if unknown:
        raise SettingsRefused(f"unknown setting(s) {', '.join(unknown)}; valid: sample, "
                              "log_level")
    sample = changes.get("sample")
    if sample is not None and not _number_in(sample, 0, 1):
        raise SettingsRefused(f"sample must be a number in 0..1, got {sample!r}")
    level = changes.get("log_level")
    if level is not None and (not isinstance(level, str) or level.lower() not in LOG_LEVELS):
        raise SettingsRefused(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return (None if sample is None else float(sample),
            None if level is None else level.lower())


def _number_in(value: object, low: float, high: float) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and low <= value <= high)


CONTROL = TelemetryControl()
