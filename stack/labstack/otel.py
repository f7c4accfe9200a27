"""OpenTelemetry for a service: traces and logs over OTLP/HTTP to the lab's telemetry store.

Every span and log record names its instance (resource attributes
service.name, service.instance.id, service.version). A log record written
while a request is handled carries that request's trace id (the SDK's handler
reads the current span) and its request id (REQUEST_ID, set by the HTTP
middleware and the gRPC interceptor). W3C trace context is what crosses the
wire, over HTTP headers and gRPC metadata alike.

Without LAB_OTLP_ENDPOINT nothing is exported: spans are still created, so
the code path is the same, but they go nowhere (the service tests need no store).
OTEL_SDK_DISABLED=true switches telemetry off: no span is made, no record exported.

Spans go out through labstack.otlpspans (an encoder ~5x cheaper than the SDK's, and no span
object waiting for export); log records through the SDK's batch processor and exporter:
only failures and warnings are logged (a successful request's span says all its record
said), so there are few of them.
"""

from __future__ import annotations

import logging
import os
import uuid
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.environment_variables import OTEL_SDK_DISABLED
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased

from .otlpspans import Poster, SpanShipper
from .sampling import CONTROL
from .settings import Settings

# The request being handled, for log records and downstream calls; "" outside a request.
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
REQUEST_ID_HEADER = "x-request-id"
# A record per failed request (5xx, an exception, an injected fault), at warning or error; a
# successful one only at debug (LAB_LOG_LEVEL=debug), to the telemetry store only (see
# ConsoleFilter): on stdout, through supervisord's pipe, it would cost more than the request.
REQUEST_LOG = logging.getLogger("labstack.requests")
TRACER_NAME = "labstack"

# Export every second (the SDK's default is 5 s: a learner would query before spans land);
# a deep queue, because a full one drops what comes next.
EXPORT_EVERY_S, MAX_BATCH, MAX_QUEUE = 1.0, 512, 16384


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
        return not record.name.startswith(("opentelemetry", "urllib3", "labstack.otlpspans"))


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
        shipper = SpanShipper(
            Poster(f"{settings.otlp_endpoint}/v1/traces"), schedule_delay=EXPORT_EVERY_S,
            max_batch=MAX_BATCH, max_queue=MAX_QUEUE)
        tracer_provider.add_span_processor(shipper)
        if os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() != "true":
            CONTROL.set_keeper(shipper, resource)  # failed or slow unsampled requests
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(
            OTLPLogExporter(f"{settings.otlp_endpoint}/v1/logs"),
            schedule_delay_millis=EXPORT_EVERY_S * 1000, max_export_batch_size=MAX_BATCH,
            max_queue_size=MAX_QUEUE))
    trace.set_tracer_provider(tracer_provider)
    set_logger_provider(logger_provider)
    if settings.otlp_endpoint:
        # no level of its own: the root logger's (LAB_LOG_LEVEL, changed live) filters
        handler = LoggingHandler(logger_provider=logger_provider)
        handler.addFilter(_NotFromTheExporter())
        handler.addFilter(RequestIdFilter())
        logging.getLogger().addHandler(handler)
