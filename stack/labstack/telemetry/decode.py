"""OTLP export requests (protobuf or OTLP/JSON) turned into flat rows for storage."""

from __future__ import annotations

import base64
import json
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

# The first of these log attributes that is present becomes the record's request_id.
# Traefik's OTLP access log and the services name it differently; extend here.
REQUEST_ID_KEYS = (
    "request_id",
    "request.id",
    "http.request.header.x-request-id",
    "request_X-Request-Id",
    "downstream_X-Request-Id",
    "origin_X-Request-Id",
)

KINDS = {0: "INTERNAL", 1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
STATUSES = {0: "UNSET", 1: "OK", 2: "ERROR"}
LEVELS = ("debug", "info", "warning", "error", "critical")
_LEVEL_ALIASES = {"trace": "debug", "warn": "warning", "err": "error", "fatal": "critical"}

# OTLP/JSON carries these as hex; protobuf's JSON mapping wants base64.
_ID_KEYS = {"traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"}
_HEX_ID = re.compile(r"(?:[0-9a-fA-F]{16}|[0-9a-fA-F]{32})?")
MAX_TIME_NS = 2**63 - 1  # SQLite's largest INTEGER; OTLP's fixed64 goes to 2**64 - 1


class BadPayload(ValueError):
    """The request body is not a valid OTLP export request."""


@dataclass
class Decoded:
    rows: list[tuple] = field(default_factory=list)
    # items dropped, by reason ("invalid_ids", "invalid_timestamps"): a partial success
    rejected: Counter[str] = field(default_factory=Counter)


def parse(kind: str, body: bytes, is_json: bool) -> Message:
    """The ExportTraceServiceRequest / ExportLogsServiceRequest in `body`."""
    message = ExportTraceServiceRequest() if kind == "traces" else ExportLogsServiceRequest()
    try:
        if is_json:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise BadPayload("the JSON body must be an object")
            json_format.ParseDict(_hex_ids_to_base64(data), message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except (DecodeError, json_format.ParseError, ValueError, RecursionError) as exc:
        raise BadPayload(f"cannot decode the OTLP {kind} request: {exc}") from exc
    return message


def _hex_ids_to_base64(node: Any) -> Any:
    """Rewrite hex trace/span ids in place so that protobuf's JSON parser reads them right."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str) and _HEX_ID.fullmatch(value):
                node[key] = base64.b64encode(bytes.fromhex(value)).decode()
            elif isinstance(value, dict | list):
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)
    return node


def count(kind: str, request: Any) -> int:
    """How many spans or log records the request holds (cheap: no rows are built)."""
    if kind == "traces":
        return sum(len(s.spans) for g in request.resource_spans for s in g.scope_spans)
    return sum(len(s.log_records) for g in request.resource_logs for s in g.scope_logs)


def span_rows(request: ExportTraceServiceRequest) -> Decoded:
    out = Decoded()
    for service, instance, resource, span in _items(request.resource_spans, "spans"):
        if len(span.trace_id) != 16 or len(span.span_id) != 8:
            out.rejected["invalid_ids"] += 1
            continue
        start, end = span.start_time_unix_nano, span.end_time_unix_nano
        if max(start, end) > MAX_TIME_NS:
            out.rejected["invalid_timestamps"] += 1
            continue
        events = [
            {"name": ev.name, "time": ev.time_unix_nano, "attributes": attributes(ev.attributes)}
            for ev in span.events
        ]
        out.rows.append((
            span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(),
            service, instance, span.name, KINDS.get(span.kind, "INTERNAL"),
            start, end, max(end - start, 0),
            STATUSES.get(span.status.code, "UNSET"), span.status.message,
            json.dumps(attributes(span.attributes)), resource, json.dumps(events),
        ))  # fmt: skip
    return out


def log_rows(request: ExportLogsServiceRequest) -> Decoded:
    out = Decoded()
    now = time.time_ns()
    for service, instance, resource, record in _items(request.resource_logs, "log_records"):
        if len(record.trace_id) not in (0, 16) or len(record.span_id) not in (0, 8):
            out.rejected["invalid_ids"] += 1
            continue
        time_ns = record.time_unix_nano or record.observed_time_unix_nano or now
        if time_ns > MAX_TIME_NS:
            out.rejected["invalid_timestamps"] += 1
            continue
        attrs = attributes(record.attributes)
        level = severity_level(record.severity_text, record.severity_number)
        body = any_value(record.body) if record.HasField("body") else ""
        out.rows.append((
            time_ns, service, instance, level, LEVELS.index(level) if level else 0,
            record.severity_number,
            body if isinstance(body, str) else json.dumps(body),
            record.trace_id.hex(), record.span_id.hex(), request_id(attrs),
            json.dumps(attrs), resource,
        ))  # fmt: skip
    return out


def _items(groups: Iterable[Any], items: str) -> Iterator[tuple[str, str, str, Any]]:
    """(service, instance, resource attributes as JSON, item) for every span or log record."""
    for group in groups:
        resource = attributes(group.resource.attributes)
        service = str(resource.get("service.name", "unknown_service"))
        instance = str(resource.get("service.instance.id", ""))
        resource_json = json.dumps(resource)
        scopes = group.scope_spans if items == "spans" else group.scope_logs
        for scope in scopes:
            for item in getattr(scope, items):
                yield service, instance, resource_json, item


def severity_level(text: str, number: int) -> str:
    """One of LEVELS from the record's text, else from its number ('' if it has neither)."""
    name = text.strip().lower()
    name = _LEVEL_ALIASES.get(name, name)
    if name in LEVELS:
        return name
    if number <= 0:
        return ""
    # OTLP severity numbers: 1-8 trace/debug, 9-12 info, 13-16 warn, 17-20 error, 21-24 fatal
    return LEVELS[min(max((number - 1) // 4 - 1, 0), len(LEVELS) - 1)]


def request_id(attrs: dict[str, Any]) -> str:
    for key in REQUEST_ID_KEYS:
        value = attrs.get(key)
        if value not in (None, ""):
            return str(value)
    return ""


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


def any_value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value(item) for item in value.array_value.values]
    if which == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return getattr(value, which)
