"""OpenTelemetry for a service: traces and logs over OTLP/HTTP to the lab's telemetry store.

Every span and log record names its instance (resource attributes
service.name, service.instance.id, service.version). A log record written
while a request is handled carries that request's trace id (the SDK's handler
reads the current span) and its request id (REQUEST_ID, set by the HTTP
middleware and the gRPC interceptor). W3C trace context is what crosses the
wire, over HTTP headers and gRPC metadata alike.

Without LAB_OTLP_ENDPOINT nothing is exported: spans are still created, so
the code path is the same, but they go nowhere (the service tests need no store).
"""

from __future__ import annotations

import logging
import uuid
from contextvars import ContextVar
from typing import TypedDict

from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased

from .sampling import CONTROL
from .settings import Settings

# The request being handled, for log records and downstream calls; "" outside a request.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
REQUEST_ID_HEADER = "x-request-id"
# One record per request handled: to the telemetry store only, unless it is a failure (see
# ConsoleFilter): on stdout, through supervisord's pipe, it would cost more than the request.
REQUEST_LOG = logging.getLogger("labstack.requests")

# Export every second (the SDK's default is 5 s: a learner would query before spans land);
# a deep queue, because a full one drops spans silently.
class _BatchSettings(TypedDict):
    schedule_delay_millis: float
    max_queue_size: int
    max_export_batch_size: int


_BATCH: _BatchSettings = {
    "schedule_delay_millis": 1000, "max_queue_size": 16384, "max_export_batch_size": 512,
}


def new_request_id(incoming: str | None) -> str:
    """The caller's request id when it is a safe token, else a fresh one."""
    if incoming and len(incoming) <= 128 and all(c.isalnum() or c in "._:-" for c in incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds the current request id to every record that does not name one itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request_id = REQUEST_ID.get()
            if request_id:
                record.request_id = request_id
        return True


class ConsoleFilter(logging.Filter):
    """What stdout (the process's console) leaves out: successful requests' records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != REQUEST_LOG.name or record.levelno >= logging.WARNING


class _NotFromTheExporter(logging.Filter):
    """An exporter's own warnings must not be exported (a failing export would feed itself)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(("opentelemetry", "urllib3"))


def configure_telemetry(settings: Settings) -> None:
    """Install the tracer and logger providers; add an OTLP log handler to the root logger."""
    resource = Resource.create(
        {
            "service.name": settings.service,
            "service.instance.id": settings.instance_id,
            "service.version": settings.version,
        }
    )
    # ParentBased: a request that arrives with a sampling decision (the load generator's or
    # Traefik's) keeps it; CONTROL's sampler decides for the others, at a rate set live.
    sampler = ParentBased(CONTROL.sampler)
    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    logger_provider = LoggerProvider(resource=resource)
    if settings.otlp_endpoint:
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(f"{settings.otlp_endpoint}/v1/traces"), **_BATCH)
        )
        logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(OTLPLogExporter(f"{settings.otlp_endpoint}/v1/logs"), **_BATCH)
        )
    trace.set_tracer_provider(tracer_provider)
    set_logger_provider(logger_provider)
    if settings.otlp_endpoint:
        handler = LoggingHandler(level=logging.INFO, logger_provider=logger_provider)
        handler.addFilter(_NotFromTheExporter())
        handler.addFilter(RequestIdFilter())
        logging.getLogger().addHandler(handler)
