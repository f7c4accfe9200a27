"""Bounded retention: by age and by size, pruned in the background while data flows."""

from __future__ import annotations

import os

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
