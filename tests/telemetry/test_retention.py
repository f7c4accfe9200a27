"""Bounded retention: by age and by size, pruned in the background while data flows."""

from __future__ import annotations

import os

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from .conftest import eventually, log_request, now_ns, span_request, unique

PROTOBUF = "application/x-protobuf"
SECOND = 1_000_000_000


def test_data_older_than_max_age_is_pruned(private_store):
    store = private_store("--max-age", "60", "--prune-interval", "0.2")
    old, fresh = unique("old"), unique("fresh")
    long_ago = now_ns() - 600 * SECOND
    for service, start in ((old, long_ago), (fresh, now_ns())):
        for signal, body in (("traces", span_request(service, 50, start, 2)),
                             ("logs", log_request(service, 30, start))):  # fmt: skip
            assert store.post(signal, body, PROTOBUF).status_code == 200
    tel = store.client()
    eventually(lambda: tel.traces(service=old).empty and tel.logs(service=old).empty,
               "the old spans and logs to be pruned")  # fmt: skip
    assert len(tel.traces(service=fresh, limit=1000)) == 50
    assert len(tel.logs(service=fresh)) == 30
    stats = tel.stats()
    assert stats["pruned"]["spans_by_age"] == 100 and stats["pruned"]["logs_by_age"] == 30
    assert (stats["spans"], stats["logs"]) == (100, 30)


def test_the_oldest_data_goes_when_the_database_outgrows_max_bytes(private_store, tmp_path):
    max_bytes = 500_000
    store = private_store("--max-bytes", str(max_bytes), "--prune-interval", "0.2")
    service = unique("flood")
    start = now_ns()
    for batch in range(20):  # ~10 MB of spans and logs, 20x the limit
        at = start + batch * SECOND
        assert store.post("traces", span_request(service, 400, at), PROTOBUF).status_code == 200
        assert store.post("logs", log_request(service, 400, at), PROTOBUF).status_code == 200
    tel = store.client()

    def within_limit() -> bool:
        stats = tel.stats()
        return stats["used_bytes"] <= max_bytes and stats["pending_rows"] == 0

    eventually(within_limit, f"the store to shrink under {max_bytes} bytes")
    stats = tel.stats()
    assert stats["pruned"]["spans_by_size"] > 0 and stats["pruned"]["logs_by_size"] > 0
    assert 0 < stats["spans"] < 8000 and 0 < stats["logs"] < 8000
    newest = tel.traces(service=service, limit=1)["start"].iloc[0].value
    assert newest >= start + 19 * SECOND, "the newest data is kept"
    assert tel.logs(service=service, limit=1)["time"].iloc[0].value >= start + 19 * SECOND
    assert tel.logs(service=service, until=(start + SECOND) / SECOND).empty, "the oldest went"
    # freed pages go back to the file system, not only to SQLite's free list
    db = tmp_path / f"{store.host}.db"
    eventually(lambda: os.path.getsize(db) <= 2 * max_bytes, "the database file to shrink")


def spans_of(trace_id: bytes, names: list[str], start_ns: int, service: str) -> bytes:
    """One request holding spans of one given trace."""
    request = ExportTraceServiceRequest.FromString(span_request(service, 1, start_ns, len(names)))
    for span, name in zip(request.resource_spans[0].scope_spans[0].spans, names, strict=True):
        span.trace_id, span.name = trace_id, name
    return request.SerializeToString()


def test_a_trace_whose_spans_arrive_far_apart_reads_back_whole(store):
    """Spans are indexed by blocks of arrival ids: the lookup walks every block between the
    trace's first and last span, however many other spans arrived in between."""
    service, trace_id, t0 = unique("spread"), os.urandom(16), now_ns()
    first = spans_of(trace_id, ["first"], t0, service)
    assert store.post("traces", first, PROTOBUF).status_code == 200
    others = span_request(unique("between"), 5000, t0)  # more than a block (4096 ids) each
    for _ in range(3):
        assert store.post("traces", others, PROTOBUF).status_code == 200
    late = spans_of(trace_id, ["late"], t0 + SECOND, service)
    assert store.post("traces", late, PROTOBUF).status_code == 200
    spans = store.client().trace(trace_id.hex())
    assert spans["name"].tolist() == ["first", "late"]
    summary = store.client().traces(service=service).iloc[0]
    assert summary["span_count"] == 2 and summary["duration_ms"] > 999


def test_size_pruning_removes_traces_whole(private_store):
    """Size slices cut by arrival; a trace cut in two leaves the query API whole."""
    store = private_store("--max-bytes", "400000", "--prune-interval", "0.2")
    service, t0 = unique("halves"), now_ns()
    ids = [os.urandom(16) for _ in range(600)]
    for batch in range(0, len(ids), 30):  # each trace's two halves in consecutive requests
        for half in ("a", "b"):
            body = ExportTraceServiceRequest()
            for i, trace_id in enumerate(ids[batch : batch + 30]):
                one = ExportTraceServiceRequest.FromString(
                    spans_of(trace_id, [f"{half}1", f"{half}2"], t0 + (batch + i) * 1000, service)
                )
                body.resource_spans.extend(one.resource_spans)
            assert store.post("traces", body.SerializeToString(), PROTOBUF).status_code == 200
    tel = store.client()
    assert tel.stats()["pruned"]["spans_by_size"] > 0, "the flood should go over the cap"
    listed = tel.traces(service=service, limit=1000)
    assert 0 < len(listed) < len(ids)
    for trace_id, count in zip(listed["trace_id"], listed["span_count"], strict=True):
        assert count == 4 and len(tel.trace(trace_id)) == 4, f"trace {trace_id} is not whole"
