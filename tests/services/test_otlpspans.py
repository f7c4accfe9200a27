"""labstack.otlpspans: the hand-written OTLP encoding is the SDK's, byte for meaning; the
shipper posts every sampled span, retries the store's backpressure, and counts what it drops."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from labstack.otlpspans import Poster, SpanShipper, encode_spans
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from .support import next_host, wait_until

pytestmark = pytest.mark.timeout(60)

RESOURCE = Resource.create({"service.name": "echo", "service.instance.id": "echo-1"})


class Collect(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Any) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


scalars = st.one_of(st.text(max_size=20), st.booleans(), st.floats(allow_nan=False),
                    st.integers(min_value=-2**63, max_value=2**63 - 1))
values = st.one_of(scalars, st.lists(st.text(max_size=5), max_size=3),
                   st.lists(st.integers(min_value=-2**63, max_value=2**63 - 1), max_size=3))
attributes = st.dictionaries(st.text(min_size=1, max_size=12), values, max_size=5)
contexts = st.builds(
    lambda t, s, remote, sampled, state: SpanContext(
        t, s, remote, TraceFlags(sampled), TraceState(state)),
    st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.booleans(), st.integers(0, 1),
    st.lists(st.tuples(st.sampled_from(["a", "vendor"]), st.sampled_from(["1", "x9"])),
             max_size=2, unique_by=lambda kv: kv[0]),
)
span_specs = st.fixed_dictionaries({
    "name": st.text(max_size=30),
    "kind": st.sampled_from(list(SpanKind)),
    "attributes": attributes,
    "parent": st.none() | contexts,
    "events": st.lists(st.tuples(st.text(max_size=10), attributes), max_size=2),
    "links": st.lists(st.tuples(contexts, attributes), max_size=2),
    "status": st.sampled_from([None, (StatusCode.OK, None), (StatusCode.ERROR, "boom"),
                               (StatusCode.ERROR, None)]),
    "scope": st.sampled_from(["labstack", "opentelemetry.instrumentation.httpx"]),
})


def make_spans(specs: list[dict[str, Any]]) -> list[ReadableSpan]:
    """Real SDK spans (one provider, so one Resource, as in a service) from `specs`; low limits,
    so that some have dropped attributes, events and links to count."""
    collect = Collect()
    limits = SpanLimits(max_span_attributes=4, max_events=1, max_links=1,
                        max_event_attributes=3, max_link_attributes=3)
    provider = TracerProvider(resource=RESOURCE, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(collect))
    for spec in specs:
        parent = (trace.set_span_in_context(trace.NonRecordingSpan(spec["parent"]))
                  if spec["parent"] else None)
        span = provider.get_tracer(spec["scope"], "1.2").start_span(
            spec["name"], context=parent, kind=spec["kind"], attributes=spec["attributes"],
            links=[Link(c, a) for c, a in spec["links"]])
        for name, attrs in spec["events"]:
            span.add_event(name, attrs)
        if spec["status"]:
            span.set_status(Status(*spec["status"]))
        span.end()
    provider.shutdown()
    return collect.spans


@settings(max_examples=150, deadline=None)
@given(st.lists(span_specs, min_size=1, max_size=4))
def test_encoding_equals_the_sdk_encoders(specs: list[dict[str, Any]]) -> None:
    spans = make_spans(specs)
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert ours == sdk_encode(spans)


def test_a_server_span_reads_back_field_by_field() -> None:
    parent = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    span = make_spans([{
        "name": "GET /", "kind": SpanKind.SERVER, "parent": parent, "events": [], "links": [],
        "attributes": {"http.response.status_code": 503, "request.id": "r-1"},
        "status": (StatusCode.ERROR, None), "scope": "labstack"}])[0]
    request = ExportTraceServiceRequest.FromString(encode_spans([span]))
    group = request.resource_spans[0]
    resource = {a.key: a.value.string_value for a in group.resource.attributes}
    assert resource["service.name"] == "echo"
    (decoded,) = group.scope_spans[0].spans
    assert group.scope_spans[0].scope.name == "labstack"
    assert decoded.trace_id == (0xABC).to_bytes(16, "big")
    assert decoded.parent_span_id == (0xDEF).to_bytes(8, "big")
    assert decoded.span_id == span.context.span_id.to_bytes(8, "big")
    assert (decoded.name, decoded.kind, decoded.status.code) == ("GET /", 2, 2)
    assert decoded.flags == 0x300  # the parent is remote, and that is known
    assert (decoded.start_time_unix_nano, decoded.end_time_unix_nano) == (
        span.start_time, span.end_time)
    assert [(a.key, a.value.int_value or a.value.string_value) for a in decoded.attributes] == [
        ("http.response.status_code", 503), ("request.id", "r-1")]


class FakeStore:
    """An OTLP/HTTP endpoint that answers `statuses` in turn (then 200), keeping every body."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses, self.bodies, self.answered = list(statuses), [], []
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = store.statuses.pop(0) if store.statuses else 200
                store.answered.append(status)
                if status == 200:
                    store.bodies.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((next_host(), 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/v1/traces"

    def spans(self) -> list[str]:
        return [span.name for body in self.bodies
                for group in ExportTraceServiceRequest.FromString(body).resource_spans
                for scope in group.scope_spans for span in scope.spans]


@pytest.fixture
def fake_store() -> Iterator[Callable[[list[int]], FakeStore]]:
    made: list[FakeStore] = []

    def make(statuses: list[int]) -> FakeStore:
        made.append(FakeStore(statuses))
        return made[-1]

    yield make
    for store in made:
        store.server.shutdown()
        store.server.server_close()


def tracer_shipping_to(shipper: SpanShipper, sampler: Any = None) -> trace.Tracer:
    provider = TracerProvider(resource=RESOURCE, **({"sampler": sampler} if sampler else {}))
    provider.add_span_processor(shipper)
    return provider.get_tracer("test")


def test_ships_sampled_spans_and_retries_the_stores_backpressure(fake_store) -> None:
    store = fake_store([503, 503])
    shipper = SpanShipper(Poster(store.url, timeout=10), schedule_delay=60)
    tracer = tracer_shipping_to(shipper)
    for name in ("a", "b", "c"):
        tracer.start_span(name).end()
    tracer_shipping_to(shipper, ALWAYS_OFF).start_span("not sampled").end()
    assert shipper.force_flush()
    assert store.answered == [503, 503, 200]
    assert store.spans() == ["a", "b", "c"]
    shipper.shutdown()


def test_gives_up_on_a_refusal_and_counts_what_a_full_queue_drops(fake_store, caplog) -> None:
    store = fake_store([400])
    shipper = SpanShipper(Poster(store.url, timeout=10), schedule_delay=60, max_queue=2)
    tracer = tracer_shipping_to(shipper)
    for name in ("a", "b", "c", "d"):
        tracer.start_span(name).end()
    assert shipper.dropped == 2
    shipper.force_flush()
    assert store.answered == [400] and store.spans() == []  # a 400 is not retried
    assert "2 spans not exported: HTTP 400" in caplog.text
    assert "2 spans dropped: the export queue was full" in caplog.text
    tracer.start_span("e").end()
    shipper.shutdown()  # shutting down flushes what is left
    assert store.spans() == ["e"]


def test_the_worker_outlives_an_unexpected_error(fake_store, caplog) -> None:
    store = fake_store([])
    poster = Poster(store.url, timeout=10)
    real_post, calls = poster.post, []

    def post_failing_once(body: bytes) -> str:
        calls.append(body)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real_post(body)

    poster.post = post_failing_once  # type: ignore[method-assign]
    shipper = SpanShipper(poster, schedule_delay=0.05)
    tracer = tracer_shipping_to(shipper)
    tracer.start_span("lost").end()
    wait_until(lambda: calls, "the first export", 5)
    tracer.start_span("after").end()
    wait_until(lambda: store.spans() == ["after"], "the next export", 5)
    assert "span export failed" in caplog.text
    shipper.shutdown()
