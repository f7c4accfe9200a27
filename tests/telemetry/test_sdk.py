"""The real OpenTelemetry SDK exporters in, labkit.telemetry out."""

from __future__ import annotations

import pandas as pd
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

from labkit.errors import LabError

from .conftest import now_ns, unique

MS = 1_000_000


def emit(sdk, level: str, number: SeverityNumber, body: str, **attributes: str) -> None:
    logger = sdk.logger_provider.get_logger("test")
    logger.emit(severity_number=number, severity_text=level, body=body, attributes=attributes)


@pytest.fixture
def checkout(store, sdk):
    """One trace (web -> cart -> db, the db call failing, 320 ms) and its logs, exported."""
    service = unique("web")
    web = sdk(store.url, service, instance=f"{service}-1")
    tracer = web.tracer_provider.get_tracer("test")
    t0 = now_ns()
    root = tracer.start_span("GET /checkout", kind=SpanKind.SERVER, start_time=t0)
    in_root = set_span_in_context(root)
    with tracer.start_as_current_span("load cart", context=in_root, start_time=t0 + 10 * MS,
                                      end_on_exit=False) as cart:  # fmt: skip
        with tracer.start_as_current_span("SELECT cart", kind=SpanKind.CLIENT,
                                          start_time=t0 + 20 * MS, end_on_exit=False) as db:
            db.set_status(Status(StatusCode.ERROR, "connection reset"))
            emit(web, "ERROR", SeverityNumber.ERROR, "DB query FAILED", request_id="req-42")
        db.end(end_time=t0 + 120 * MS)
    cart.end(end_time=t0 + 300 * MS)
    root.end(end_time=t0 + 320 * MS)
    emit(web, "INFO", SeverityNumber.INFO, "served checkout", request_id="req-42")
    emit(web, "DEBUG", SeverityNumber.DEBUG, "cache miss", request_id="req-43")
    # a second, fast and healthy trace from the same service
    fast = tracer.start_span("GET /health", kind=SpanKind.SERVER, start_time=t0 + 400 * MS)
    fast.end(end_time=t0 + 402 * MS)
    web.flush()
    return service, format(root.get_span_context().trace_id, "032x")

def test_a_trace_exported_by_the_sdk_reads_back_with_its_tree(store, checkout):
    service, trace_id = checkout
    spans = store.client().trace(trace_id)
    assert list(spans["name"]) == ["GET /checkout", "load cart", "SELECT cart"]
    assert list(spans["depth"]) == [0, 1, 2]
    assert list(spans["kind"]) == ["SERVER", "INTERNAL", "CLIENT"]
    assert list(spans["offset_ms"]) == [0.0, 10.0, 20.0]
    assert list(spans["duration_ms"]) == [320.0, 290.0, 100.0]
    assert spans["parent_span_id"].iloc[0] == ""
    assert spans["parent_span_id"].iloc[2] == spans["span_id"].iloc[1]
    assert set(spans["service"]) == {service} and set(spans["instance"]) == {f"{service}-1"}
    db = spans.iloc[2]
    assert (db["status"], db["status_message"]) == ("ERROR", "connection reset")
    assert isinstance(db["attributes"], dict)
    assert isinstance(db["start"], pd.Timestamp) and str(db["start"].tz) == "UTC"


def test_trace_summaries_and_their_filters(store, checkout):
    service, trace_id = checkout
    tel = store.client()
    found = tel.traces(service=service)
    assert len(found) == 2
    assert found["root_name"].tolist() == ["GET /health", "GET /checkout"], "newest first"
    slow = found.iloc[1]
    assert slow["trace_id"] == trace_id
    assert (slow["root_service"], slow["span_count"], slow["duration_ms"]) == (service, 3, 320.0)
    assert slow["services"] == [service] and slow["error"]

    assert tel.traces(service=service, min_duration="200ms")["trace_id"].tolist() == [trace_id]
    assert tel.traces(service=service, min_duration=0.319)["trace_id"].tolist() == [trace_id]
    assert tel.traces(service=service, min_duration="1.5s").empty
    assert tel.traces(service=service, status="error")["trace_id"].tolist() == [trace_id]
    assert tel.traces(service=service, status="ok")["root_name"].tolist() == ["GET /health"]
    soon = pd.Timestamp.now(tz="UTC") + pd.Timedelta("5s")  # the fast trace starts in 0.4 s
    assert len(tel.traces(service=service, since="5m", until=soon)) == 2
    assert tel.traces(service=service, until="5m").empty
    assert len(tel.traces(service=service, limit=1)) == 1
    assert tel.traces(service=unique("nobody")).columns.tolist()[:3] == [
        "trace_id", "start", "duration_ms"]  # fmt: skip


def test_logs_carry_trace_context_and_request_id(store, checkout):
    service, trace_id = checkout
    tel = store.client()
    logs = tel.logs(service=service)
    assert logs["body"].tolist() == ["DB query FAILED", "served checkout", "cache miss"]
    assert logs["level"].tolist() == ["error", "info", "debug"]
    failed = logs.iloc[0]
    assert failed["trace_id"] == trace_id
    assert failed["span_id"] == tel.trace(trace_id)["span_id"].iloc[2]
    assert failed["request_id"] == "req-42" and failed["attributes"]["request_id"] == "req-42"
    assert logs["time"].is_monotonic_increasing

    assert tel.logs(request_id="req-42", service=service)["body"].tolist() == [
        "DB query FAILED", "served checkout"]  # fmt: skip
    assert tel.logs(trace_id=trace_id)["body"].tolist() == ["DB query FAILED"]
    assert tel.logs(service=service, level="info")["level"].tolist() == ["error", "info"]
    assert tel.logs(service=service, level="ERROR")["body"].tolist() == ["DB query FAILED"]
    assert tel.logs(service=service, contains="query failed")["body"].tolist() == [
        "DB query FAILED"]  # fmt: skip
    assert tel.logs(service=service, contains="%").empty, "LIKE wildcards are literal"
    assert tel.logs(service=service, instance=f"{service}-1", limit=1)["body"].tolist() == [
        "cache miss"], "the newest records when limited"  # fmt: skip
    assert service in tel.services()


def test_empty_logs_still_have_the_columns(store):
    logs = store.client().logs(service=unique("silent"))
    assert logs.empty
    assert logs.columns.tolist() == ["time", "service", "instance", "level", "body",
                                     "request_id", "trace_id", "span_id", "attributes"]


def test_gzip_compressed_export(store, sdk):
    service = unique("gz")
    pipeline = sdk(store.url, service, gzip=True)
    with pipeline.tracer_provider.get_tracer("test").start_as_current_span("zipped"):
        emit(pipeline, "WARN", SeverityNumber.WARN, "compressed")
    pipeline.flush()
    tel = store.client()
    assert tel.traces(service=service)["root_name"].tolist() == ["zipped"]
    assert tel.logs(service=service)["level"].tolist() == ["warning"]


def test_unknown_trace_is_a_clear_error(store):
    with pytest.raises(LabError, match="no trace 0123456789abcdef0123456789abcdef.*pruned"):
        store.client().trace("0123456789abcdef0123456789abcdef")
    with pytest.raises(LabError, match="32 hex characters"):
        store.client().trace("nope")
