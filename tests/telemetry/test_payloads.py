"""OTLP/HTTP at the wire: OTLP/JSON by hand, responses, and bad input that must not hurt."""

from __future__ import annotations

import gzip
import json

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .conftest import now_ns, span_request, unique

PROTOBUF, JSON = "application/x-protobuf", "application/json"


def json_spans(service: str, start_ns: int) -> dict:
    """Written from the OTLP spec's example: hex ids, int64 as strings, enums as integers."""
    return {"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "service.instance.id", "value": {"stringValue": "json-1"}},
        ]},
        "scopeSpans": [{"scope": {"name": "by-hand"}, "spans": [
            {"traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
             "parentSpanId": "", "name": "GET /json", "kind": 2,
             "startTimeUnixNano": str(start_ns), "endTimeUnixNano": str(start_ns + 250_000_000),
             "attributes": [{"key": "http.status_code", "value": {"intValue": "503"}},
                            {"key": "retry", "value": {"boolValue": True}}],
             "events": [{"timeUnixNano": str(start_ns + 1000), "name": "retrying"}],
             "status": {"code": 2, "message": "upstream down"}},
            {"trace_id": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b175",
             "parent_span_id": "eee19b7ec3c1b174", "name": "child", "kind": "SPAN_KIND_CLIENT",
             "start_time_unix_nano": start_ns + 1_000_000,
             "end_time_unix_nano": start_ns + 2_000_000},
        ]}],
    }]}  # fmt: skip


def json_logs(service: str, time_ns: int) -> dict:
    return {"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeLogs": [{"logRecords": [
            {"timeUnixNano": str(time_ns), "severityNumber": 10, "severityText": "Information",
             "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
             "body": {"stringValue": "upstream down"},
             "attributes": [{"key": "request.id", "value": {"stringValue": "r-json"}}]},
            {"observedTimeUnixNano": str(time_ns + 1), "severityNumber": 18,
             "body": {"kvlistValue": {"values": [{"key": "event", "value": {"stringValue": "x"}}]}},
             "attributes": [{"key": "http.request.header.x-request-id",
                             "value": {"arrayValue": {"values": [{"stringValue": "r-2"}]}}}]},
        ]}],
    }]}  # fmt: skip


def test_otlp_json_written_by_hand(store):
    service, t0 = unique("json"), now_ns()
    response = store.post("traces", json.dumps(json_spans(service, t0)).encode(), JSON)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON and response.json() == {}
    response = store.post("logs", json.dumps(json_logs(service, t0)).encode(), JSON)
    assert response.status_code == 200, response.text

    tel = store.client()
    spans = tel.trace("5b8efff798038103d269b633813fc60c")
    assert spans["span_id"].tolist() == ["eee19b7ec3c1b174", "eee19b7ec3c1b175"]
    assert spans["kind"].tolist() == ["SERVER", "CLIENT"] and spans["depth"].tolist() == [0, 1]
    root = spans.iloc[0]
    assert (root["service"], root["instance"], root["duration_ms"]) == (service, "json-1", 250.0)
    assert (root["status"], root["status_message"]) == ("ERROR", "upstream down")
    assert root["attributes"] == {"http.status_code": 503, "retry": True}
    summary = tel.traces(service=service).iloc[0]
    assert (summary["root_name"], summary["span_count"], summary["error"]) == ("GET /json", 2, True)

    logs = tel.logs(service=service)
    assert logs["level"].tolist() == ["info", "error"]
    assert logs["request_id"].tolist() == ["r-json", "['r-2']"]
    assert logs["trace_id"].iloc[0] == "5b8efff798038103d269b633813fc60c"
    assert json.loads(logs["body"].iloc[1]) == {"event": "x"}
    assert logs["time"].iloc[1].value == t0 + 1, "observed time stands in for a missing time"


def test_protobuf_answer_and_partial_success(store):
    service = unique("pb")
    response = store.post("traces", span_request(service, 2, now_ns()), PROTOBUF)
    assert response.status_code == 200
    assert response.headers["content-type"] == PROTOBUF
    assert not ExportTraceServiceResponse.FromString(response.content).HasField("partial_success")

    request = ExportTraceServiceRequest.FromString(span_request(service, 2, now_ns()))
    request.resource_spans[0].scope_spans[0].spans[0].trace_id = b"\x01\x02"
    response = store.post("traces", request.SerializeToString(), PROTOBUF)
    answer = ExportTraceServiceResponse.FromString(response.content)
    assert response.status_code == 200 and answer.partial_success.rejected_spans == 1
    bad_id = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}'
    answer = store.post("traces", bad_id, JSON).json()
    assert answer["partialSuccess"]["rejectedSpans"] == "1"
    assert len(store.client().traces(service=service)) == 3


def test_bad_requests_are_refused_and_nothing_is_lost(store):
    service = unique("kept")
    assert store.post("traces", span_request(service, 3, now_ns()), PROTOBUF).status_code == 200
    tel = store.client()
    before = tel.stats()["spans"]
    cases = [
        ("traces", b"\xff\xff\xff garbage", PROTOBUF, {}, 400),
        ("traces", b'{"resourceSpans": [', JSON, {}, 400),
        ("logs", b'{"resourceLogs": [{"scopeLogs": 7}]}', JSON, {}, 400),
        ("traces", b'["not", "an", "object"]', JSON, {}, 400),
        ("traces", b'{"resourceSpans": {"scopeSpans": []}}', JSON, {}, 400),
        ("logs", b"not gzip at all", PROTOBUF, {"Content-Encoding": "gzip"}, 400),
        ("logs", gzip.compress(b"x" * 1000)[:-8], PROTOBUF, {"Content-Encoding": "gzip"}, 400),
        ("traces", b"{}", "text/plain", {}, 415),
        ("traces", b"{}", JSON, {"Content-Encoding": "br"}, 415),
    ]  # fmt: skip
    for signal, body, content_type, headers, expected in cases:
        response = store.post(signal, body, content_type, **headers)
        assert response.status_code == expected, (body[:40], response.text)
    assert store.post("traces", b"{}", JSON).json() == {}, "an empty request is fine"
    response = store.post("metrics", b"{}", JSON)
    assert response.status_code == 404, "metrics go to Prometheus"

    assert tel.stats()["spans"] == before
    assert len(tel.traces(service=service)) == 3
    assert tel.stats()["rejected"]["malformed"] >= 4


def test_oversized_bodies_and_gzip_bombs_get_413(private_store):
    store = private_store("--max-body", "100000")
    service = unique("big")
    assert store.post("traces", span_request(service, 10, now_ns()), PROTOBUF).status_code == 200
    huge = span_request(service, 2000, now_ns())
    assert len(huge) > 100_000
    assert store.post("traces", huge, PROTOBUF).status_code == 413
    bomb = gzip.compress(b"\0" * 1_000_000)
    assert len(bomb) < 100_000
    response = store.post("traces", bomb, PROTOBUF, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    zipped = gzip.compress(span_request(service, 5, now_ns()))
    assert store.post("traces", zipped, PROTOBUF, **{"Content-Encoding": "gzip"}).status_code == 200
    tel = store.client()
    assert len(tel.traces(service=service)) == 15
    assert tel.stats()["rejected"]["too_large"] == 2


def test_default_limit_stops_a_16_mib_gzip_bomb(store):
    bomb = gzip.compress(b"\0" * (17 * 1024 * 1024))
    response = store.post("logs", bomb, PROTOBUF, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413
    assert store.client().stats()["logs"] >= 0, "the store is still answering"
