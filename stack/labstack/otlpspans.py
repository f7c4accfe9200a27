"""Finished spans to the telemetry store: OTLP/HTTP protobuf, encoded by hand as each ends.

The SDK's OTLPSpanExporter builds one protobuf object per span, per attribute and per value
in Python, and hashes the Resource (a json.dumps) once per span to group them: ~26 us a span
here. Written straight as protobuf wire bytes (the format is small and stable: see
opentelemetry/proto/trace/v1/trace.proto), a span costs ~5 us; the resource and scope are
written once per batch. The bytes are the SDK encoder's, field for field
(tests/services/test_otlpspans.py compares them). SpanShipper, a span processor, encodes each
span as it ends and posts the bytes in batches.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext

log = logging.getLogger("labstack.otlpspans")

_DOUBLE = struct.Struct("<d")
_FIXED32 = struct.Struct("<I")
_FIXED64 = struct.Struct("<Q")
# SpanFlags: the parent's is_remote is known (0x100), and whether it is remote (0x200)
_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200
# the store's backpressure (503), a proxy in between, a store restarting: try again
RETRY_STATUSES = (429, 502, 503, 504)


def _varint(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL[value]
    value &= 0xFFFFFFFFFFFFFFFF  # int64: negatives are ten bytes of two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((n,)) for n in range(128)]
# a field's tag by wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32) and number
_TAGS = [[_varint(number << 3 | wire) for number in range(17)] for wire in range(6)]
_LENGTH_TAGS = _TAGS[2]


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (string, bytes or message)."""
    return _LENGTH_TAGS[number] + _varint(len(payload)) + payload


def _text(number: int, text: str | None) -> bytes:
    return _field(number, text.encode()) if text else b""  # proto3: empty means absent


def _count(number: int, value: int) -> bytes:
    return _TAGS[0][number] + _varint(value) if value else b""


def _fixed64(number: int, value: int) -> bytes:
    return _TAGS[1][number] + _FIXED64.pack(value)


def _fixed32(number: int, value: int) -> bytes:
    return _TAGS[5][number] + _FIXED32.pack(value)


def _any_value(value: Any) -> bytes:
    """An AnyValue, in the SDK encoder's order of type checks (bool before int)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10" + _varint(int(value))
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _field(7, value)
    if isinstance(value, Sequence):
        return _field(5, b"".join(_field(1, _any_value(v)) for v in value))
    if isinstance(value, Mapping):
        return _field(6, b"".join(_field(1, _key_value(str(k), v)) for k, v in value.items()))
    raise TypeError(f"cannot encode a {type(value).__name__} attribute value")


def _key_value(key: str, value: Any) -> bytes:
    return _field(1, key.encode()) + _field(2, _any_value(value))


# Most attributes repeat from span to span (method, route, status, address): each (key,
# value) pair is encoded once, until the cache is full of one-off values (request ids), when
# it starts again: that costs one encoding per common pair per refill.
_ENCODED: dict[tuple[str, Any], bytes] = {}
_ENCODED_MAX = 4096


def _attributes(number: int, attributes: Mapping[str, Any] | None) -> bytes:
    if not attributes:
        return b""
    tag, parts = _LENGTH_TAGS[number], []
    for item in attributes.items():
        try:
            encoded = _ENCODED.get(item)
        except TypeError:  # an unhashable value (a list): encode it every time
            encoded = None
        if encoded is None:
            try:
                encoded = _key_value(*item)
            except TypeError as exc:  # the SDK's encoder also drops such an attribute
                log.warning("attribute %s not exported: %s", item[0], exc)
                continue
            if len(_ENCODED) >= _ENCODED_MAX:
                _ENCODED.clear()
            with contextlib.suppress(TypeError):
                _ENCODED[item] = encoded
        parts.append(tag + _varint(len(encoded)) + encoded)
    return b"".join(parts)


def _flags(context: SpanContext | None) -> int:
    return _HAS_IS_REMOTE | _IS_REMOTE if context and context.is_remote else _HAS_IS_REMOTE


def encode_span(span: ReadableSpan) -> bytes:
    """One Span message (without its field tag)."""
    context = span.get_span_context()
    assert context is not None  # a finished SDK span always has one
    parent = span.parent
    parts = [
        b"\x0a\x10", context.trace_id.to_bytes(16, "big"),
        b"\x12\x08", context.span_id.to_bytes(8, "big"),
        _text(3, ",".join(f"{k}={v}" for k, v in context.trace_state.items())),
        b"\x22\x08" + parent.span_id.to_bytes(8, "big") if parent else b"",
        _text(5, span.name),
        _count(6, span.kind.value + 1),  # the SDK's SpanKind counts from 0, OTLP's from 1
        _fixed64(7, span.start_time or 0),
        _fixed64(8, span.end_time or 0),
        _attributes(9, span.attributes),
        _count(10, span.dropped_attributes),
    ]  # fmt: skip
    for event in span.events:
        parts.append(_field(11, b"".join((
            _fixed64(1, event.timestamp), _text(2, event.name),
            _attributes(3, event.attributes), _count(4, event.dropped_attributes)))))
    parts.append(_count(12, span.dropped_events))
    for link in span.links:
        parts.append(_field(13, b"".join((
            b"\x0a\x10", link.context.trace_id.to_bytes(16, "big"),
            b"\x12\x08", link.context.span_id.to_bytes(8, "big"),
            _attributes(4, link.attributes), _count(5, link.dropped_attributes),
            _fixed32(6, _flags(link.context))))))
    parts.append(_count(14, span.dropped_links))
    status = span.status
    parts.append(_field(15, _text(2, status.description) + _count(3, status.status_code.value)))
    parts.append(_fixed32(16, _flags(parent)))
    return b"".join(parts)


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return b""
    return _text(1, scope.name) + _text(2, scope.version) + _attributes(3, scope.attributes)


def _group(items: Iterable[tuple[Resource, InstrumentationScope | None, bytes]]) -> bytes:
    """An ExportTraceServiceRequest of encoded spans, grouped by resource then by scope in the
    order they first appear (as the SDK's encoder groups them), by identity, not by hash
    (Resource.__hash__ is a json.dumps): a provider's spans share its one Resource."""
    groups: dict[int, tuple[Resource, dict[int, tuple[InstrumentationScope | None, list]]]] = {}
    for resource, scope, span in items:
        _, by_scope = groups.setdefault(id(resource), (resource, {}))
        by_scope.setdefault(id(scope), (scope, []))[1].append(span)
    request = []
    for resource, by_scope in groups.values():
        scope_spans = b"".join(
            _field(2, _field(1, _scope(scope)) + b"".join(_field(2, s) for s in encoded)
                   + _text(3, scope.schema_url if scope else None))
            for scope, encoded in by_scope.values()
        )
        resource_spans = (_field(1, _attributes(1, resource.attributes)) + scope_spans
                          + _text(3, resource.schema_url))
        request.append(_field(1, resource_spans))
    return b"".join(request)


def encode_spans(spans: Iterable[ReadableSpan]) -> bytes:
    """The ExportTraceServiceRequest the SDK's OTLP exporter would send for `spans`."""
    return _group((s.resource, s.instrumentation_scope, encode_span(s)) for s in spans)


class Poster:
    """POSTs protobuf bodies to an OTLP/HTTP endpoint (http:// only: the lab's store) over one
    kept-alive connection; retries the store's backpressure until `timeout` seconds."""

    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        url = urlsplit(endpoint)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"the span endpoint must be http://HOST:PORT/PATH, got {endpoint!r}")
        self.host, self.port, self.path = url.hostname, url.port or 80, url.path or "/"
        self.timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def post(self, body: bytes) -> str:
        """"" once the endpoint took `body`, else why it did not."""
        deadline, pause = time.monotonic() + self.timeout, 0.1
        while True:
            status, reason = self._post_once(body)
            if status == 200:
                return ""
            if status not in RETRY_STATUSES or time.monotonic() + pause > deadline:
                return reason
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _post_once(self, body: bytes) -> tuple[int, str]:
        if self._connection is None:
            self._connection = http.client.HTTPConnection(self.host, self.port,
                                                          timeout=self.timeout)
        try:
            self._connection.request("POST", self.path, body=body,
                                     headers={"Content-Type": "application/x-protobuf"})
            response = self._connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return 503, f"{type(exc).__name__}: {exc}"  # retried like the store's backpressure
        if response.status == 200:
            return 200, ""
        return response.status, f"HTTP {response.status}: {answer[:200]!r}"

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class SpanShipper(SpanProcessor):
    """Each sampled span encoded as it ends, the bytes posted in batches by a worker thread.

    Unlike the SDK's BatchSpanProcessor, nothing but bytes waits for export: no span objects
    linger for the garbage collector to scan (measured: its pauses made most of telemetry's
    p99), and the worker holds the GIL only to join bytes, never for a whole batch's encoding.
    """

    def __init__(self, poster: Poster, *, schedule_delay: float = 1.0, max_batch: int = 512,
                 max_queue: int = 16384) -> None:
        self.poster = poster
        self.schedule_delay, self.max_batch, self.max_queue = schedule_delay, max_batch, max_queue
        self._queue: deque[tuple[Resource, InstrumentationScope | None, bytes]] = deque()
        self._wake = threading.Event()
        self._export_lock = threading.Lock()  # the worker, force_flush and shutdown take turns
        self._stopping = False
        self.dropped = 0
        self._worker = threading.Thread(target=self._run, name="span-shipper", daemon=True)
        self._worker.start()

    def on_end(self, span: ReadableSpan) -> None:
        if self._stopping or not span.context.trace_flags.sampled:
            return
        if len(self._queue) >= self.max_queue:  # the store is down or far behind
            self.dropped += 1
            return
        try:
            encoded = encode_span(span)
        except Exception:  # telemetry must never fail the request that made the span
            log.exception("span %r not exported: it cannot be encoded", span.name)
            return
        self._queue.append((span.resource, span.instrumentation_scope, encoded))
        if len(self._queue) >= self.max_batch:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.schedule_delay)
            self._wake.clear()
            try:
                self._export()
            except Exception:  # a dead worker would silently keep every later span
                log.exception("span export failed; trying again at the next batch")

    def _export(self) -> None:
        """Post everything queued, a batch at a time."""
        with self._export_lock:
            while self._queue:
                batch = [self._queue.popleft()
                         for _ in range(min(self.max_batch, len(self._queue)))]
                reason = self.poster.post(_group(batch))
                if reason:
                    log.warning("%d spans not exported: %s", len(batch), reason)
                if self.dropped:
                    log.warning("%d spans dropped: the export queue was full", self.dropped)
                    self.dropped = 0

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        self._export()
        return True

    def shutdown(self) -> None:
        self._stopping = True
        self._wake.set()
        self._worker.join(self.poster.timeout)
        self._export()
        self.poster.close()
