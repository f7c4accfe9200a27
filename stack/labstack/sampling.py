"""The instance's telemetry settings, changeable while it runs (the admin API's /telemetry).

- the trace sampler for traces this instance starts itself (a caller without trace
  context); a caller's decision is always kept (ParentBased, in labstack.otel), so the lab's
  sampling is decided where a request enters and every hop agrees;
- `keep_slower_than_ms`: an unsampled request that fails or takes longer is recorded
  anyway, by each service it reached (see `keep` and `record_kept`): the requests worth
  reading are never lost to sampling;
- the log level of the whole process (labstack.logs.set_level).

One per process, like the OpenTelemetry providers it feeds: CONTROL.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, TraceFlags
from opentelemetry.util.types import Attributes

from .settings import LOG_LEVELS

# Libraries that log one record per successful call (httpx: "HTTP Request: GET ..." at info):
# kept for debug, like our own records of successful requests.
PER_CALL_LOGGERS = ("httpx",)
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
        self.keep_slower_than_ms = math.inf
        # where kept spans go (labstack.otel's span processor); None: nowhere
        self._keeper: tuple[SpanProcessor, Resource] | None = None
        self._lock = threading.Lock()

    def set_keeper(self, processor: SpanProcessor, resource: Resource) -> None:
        self._keeper = processor, resource

    def configure(self, sample: float, keep_slower_than_ms: float, log_level: str) -> None:
        self.update({"sample": sample, "keep_slower_than_ms": keep_slower_than_ms,
                     "log_level": log_level})

    def keep(self, failed: bool, duration_s: float) -> bool:
        """Whether an unsampled request is worth recording anyway."""
        return self._keeper is not None and (
            failed or duration_s * 1000 > self.keep_slower_than_ms)

    def record_kept(self, hop: SpanContext, parent: SpanContext | None, name: str,
                    kind: SpanKind, attributes: Attributes, status: Status, start_ns: int,
                    end_ns: int) -> None:
        """Record, after the fact, the span of an unsampled request worth keeping: with the
        ids this hop passed on (`hop`) and its caller's (`parent`), so that the hops that
        kept theirs meet in one trace in the store; the others stay unrecorded."""
        if self._keeper is None:
            return
        processor, resource = self._keeper
        kept = SpanContext(hop.trace_id, hop.span_id, is_remote=False,
                           trace_flags=TraceFlags(TraceFlags.SAMPLED),
                           trace_state=hop.trace_state)
        processor.on_end(ReadableSpan(
            name, context=kept, parent=parent, resource=resource, attributes=attributes,
            kind=kind, status=status, start_time=start_ns, end_time=end_ns,
            instrumentation_scope=_KEPT_SCOPE))

    def describe(self) -> dict[str, Any]:
        return {"sample": self.sampler.rate, "keep_slower_than_ms": self.keep_slower_than_ms,
                "log_level": level_name()}

    def update(self, changes: object) -> tuple[dict[str, Any], dict[str, Any]]:
        """Apply a partial change (all checked first: nothing changes on a refusal);
        returns the settings before and after."""
        sample, keep_ms, level = _parse(changes)
        with self._lock:
            old = self.describe()
            if sample is not None:
                self.sampler.set_rate(sample)
            if keep_ms is not None:
                self.keep_slower_than_ms = keep_ms
            if level is not None:
                set_level(level)
            return old, self.describe()


def set_level(name: str) -> None:
    """The process's log level (debug, info, warning, error): the root logger's, which every
    handler follows."""
    level: int = logging.getLevelName(name.upper())  # a name it knows gives its number
    logging.getLogger().setLevel(level)
    for logger in PER_CALL_LOGGERS:
        logging.getLogger(logger).setLevel(level if level == logging.DEBUG
                                           else max(level, logging.WARNING))


def level_name() -> str:
    return logging.getLevelName(logging.getLogger().level).lower()


_KEPT_SCOPE = InstrumentationScope("labstack.kept")  # recorded though not sampled


def _parse(changes: object) -> tuple[float | None, float | None, str | None]:
    if not isinstance(changes, dict) or not changes:
        raise SettingsRefused("send a JSON object with some of sample, keep_slower_than_ms, "
                              "log_level")
    unknown = sorted(set(changes) - {"sample", "keep_slower_than_ms", "log_level"})
    if unknown:
        raise SettingsRefused(f"unknown setting(s) {', '.join(unknown)}; valid: sample, "
                              "keep_slower_than_ms, log_level")
    sample = changes.get("sample")
    if sample is not None and not _number_in(sample, 0, 1):
        raise SettingsRefused(f"sample must be a number in 0..1, got {sample!r}")
    keep_ms = changes.get("keep_slower_than_ms")
    if keep_ms is not None and not _number_in(keep_ms, 0, 60_000):
        raise SettingsRefused(f"keep_slower_than_ms must be a number in 0..60000, "
                              f"got {keep_ms!r}")
    level = changes.get("log_level")
    if level is not None and (not isinstance(level, str) or level.lower() not in LOG_LEVELS):
        raise SettingsRefused(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    return (None if sample is None else float(sample),
            None if keep_ms is None else float(keep_ms),
            None if level is None else level.lower())


def _number_in(value: object, low: float, high: float) -> bool:
    return (not isinstance(value, bool) and isinstance(value, int | float)
            and low <= value <= high)


CONTROL = TelemetryControl()
