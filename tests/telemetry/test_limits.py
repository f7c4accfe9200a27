"""Limits that hold under abuse (issue #11): disk, bad timestamps, request size, bad queries."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
from labstack.telemetry import decode
from labstack.telemetry.storage import Settings, Store
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from .conftest import eventually, log_request, now_ns, span_request, unique

PROTOBUF = "application/x-protobuf"
SECOND = 1_000_000_000
MIB = 1024 * 1024


def on_disk(db: Path) -> int:
    """The database and its WAL, as the file system counts them."""
    return sum(os.path.getsize(f) for f in (db, Path(f"{db}-wal")) if f.exists())


def test_the_files_stay_within_max_bytes_and_shrink_after_pruning(private_store, tmp_path):
    max_bytes = 2 * MIB
    store = private_store("--max-bytes", str(max_bytes), "--prune-interval", "0.2")
    db = tmp_path / f"{store.host}.db"
    service, start = unique("fill"), now_ns()
    peak = 0
    for batch in range(30):  # ~14 MB of spans and logs, 7x the limit, as fast as it goes
        at = start + batch * SECOND
        assert store.post("traces", span_request(service, 400, at), PROTOBUF).status_code == 200
        assert store.post("logs", log_request(service, 400, at), PROTOBUF).status_code == 200
        peak = max(peak, on_disk(db))
    # the documented margin: the WAL limit (here 1 MiB) plus a write batch or two (small here)
    assert peak <= 1.5 * max_bytes + MIB, f"{peak / MIB:.1f} MiB on disk"
    tel = store.client()
    eventually(lambda: tel.stats()["pending_rows"] == 0, "the writes to finish")
    eventually(lambda: on_disk(db) <= 1.25 * max_bytes,
               f"DB + WAL to shrink back to {max_bytes} bytes (+25%)", timeout=15)  # fmt: skip
    assert tel.stats()["pruned"]["spans_by_size"] > 0


def spans_at(service: str, start_ns: int, end_ns: int) -> bytes:
    request = ExportTraceServiceRequest.FromString(span_request(service, 1, now_ns()))
    span = request.resource_spans[0].scope_spans[0].spans[0]
    span.start_time_unix_nano, span.end_time_unix_nano = start_ns, end_ns
    return request.SerializeToString()


def log_at(service: str, time_ns: int) -> bytes:
    request = ExportLogsServiceRequest.FromString(log_request(service, 1, now_ns()))
    request.resource_logs[0].scope_logs[0].log_records[0].time_unix_nano = time_ns
    return request.SerializeToString()


def test_timestamps_sqlite_cannot_hold_are_rejected_not_retried(private_store):
    store = private_store()
    service = unique("far")
    cases = [
        ("traces", spans_at(service, 2**63, 2**63 + 1)),
        ("traces", spans_at(service, now_ns(), 2**64 - 1)),
        ("logs", log_at(service, 2**64 - 1)),
        ("logs", log_at(service, 2**63)),
    ]
    for signal, body in cases:
        response = store.post(signal, body, PROTOBUF)
        assert response.status_code == 200, response.text
        answer = ExportTraceServiceResponse.FromString(response.content)
        # the logs' answer has the same field numbers: 1 = rejected count, 2 = message
        assert answer.partial_success.rejected_spans == 1
        assert "timestamps over" in answer.partial_success.error_message
    assert store.client().stats()["rejected"]["invalid_timestamps"] == 4


def test_one_bad_request_does_not_fail_the_others_written_with_it(private_store):
    store = private_store()
    good = [unique("good") for _ in range(12)]
    bodies = [("traces", span_request(s, 50, now_ns())) for s in good[:6]]
    bodies += [("logs", log_request(s, 50, now_ns())) for s in good[6:]]
    bodies.insert(6, ("traces", spans_at(unique("bad"), 2**63, 2**63 + 1)))
    bodies.insert(3, ("logs", log_at(unique("bad"), 2**64 - 1)))
    with ThreadPoolExecutor(len(bodies)) as pool:
        codes = list(pool.map(lambda b: store.post(b[0], b[1], PROTOBUF).status_code, bodies))
    assert codes == [200] * len(bodies)
    tel = store.client()
    assert all(len(tel.traces(service=s, limit=100)) == 50 for s in good[:6])
    assert all(len(tel.logs(service=s)) == 50 for s in good[6:])


def test_a_request_sqlite_refuses_fails_alone_in_its_group_commit(tmp_path):
    """The savepoint per request, behind the validation: rows that slip past it."""
    store = Store(Settings(tmp_path / "group.db"))
    try:
        good = [log_at(s, now_ns()) for s in ("a", "b")]
        rows = [decode.log_rows(ExportLogsServiceRequest.FromString(b)).rows for b in good]
        bad = [(2**63, *rows[0][0][1:])]  # what the validation now refuses
        batch = [("logs", rows[0], Future()), ("logs", bad, Future()), ("logs", rows[1], Future())]
        store._write(batch)
        assert [f.exception() is None for _, _, f in batch] == [True, False, True]
        stored = store.conn.execute("SELECT service FROM logs ORDER BY service").fetchall()
        assert stored == [("a",), ("b",)]
    finally:
        store.conn.close()


def test_a_request_with_too_many_records_gets_413_naming_the_limit(private_store):
    store = private_store("--max-records", "100")
    service = unique("many")
    response = store.post("traces", span_request(service, 101, now_ns()), PROTOBUF)
    assert response.status_code == 413 and "at most 100" in response.text, response.text
    response = store.post("logs", log_request(service, 101, now_ns()), PROTOBUF)
    assert response.status_code == 413 and "at most 100" in response.text, response.text
    assert store.post("traces", span_request(service, 100, now_ns()), PROTOBUF).status_code == 200
    assert store.post("logs", log_request(service, 100, now_ns()), PROTOBUF).status_code == 200
    tel = store.client()
    assert len(tel.traces(service=service, limit=1000)) == 100
    assert tel.stats()["rejected"]["too_many_records"] == 2


def test_a_request_larger_than_max_pending_gets_413_even_with_an_empty_queue(private_store):
    store = private_store("--max-pending", "50")
    response = store.post("logs", log_request(unique("over"), 51, now_ns()), PROTOBUF)
    assert response.status_code == 413 and "at most 50" in response.text, response.text
    assert store.client().stats()["logs"] == 0


def test_query_parameters_that_do_not_parse_get_400(private_store):
    store = private_store()
    cases = [
        ("/api/traces", "limit", "²"),  # a digit to str.isdigit() and int()
        ("/api/logs", "limit", "²"),
        ("/api/traces", "limit", "-5"),
        ("/api/logs", "limit", "-1"),
        ("/api/traces", "limit", "9" * 5000),  # more digits than int() converts
        ("/api/traces", "since", "1e300"),
        ("/api/traces", "until", "-1e300"),
        ("/api/traces", "min_duration_ms", "1e300"),
        ("/api/traces", "min_duration_ms", "-1"),
        ("/api/logs", "since", "1e300"),
        ("/api/logs", "until", "NaN"),
        ("/api/traces", "since", "inf"),
    ]
    for path, name, value in cases:
        response = httpx.get(f"{store.url}{path}", params={name: value}, timeout=10)
        assert response.status_code == 400, (path, name, value[:10], response.text)
        assert name in response.json()["error"]
