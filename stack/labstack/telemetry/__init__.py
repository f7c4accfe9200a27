"""The lab's telemetry store: an OTLP/HTTP receiver that keeps traces and logs in SQLite.

No trace or log backend installs here without Docker, so this small one stands in.

Accepts (OTLP/HTTP, loopback only):
    POST /v1/traces, /v1/logs   application/x-protobuf or application/json (OTLP/JSON: hex
                                ids, lowerCamelCase or snake_case), optionally gzip.
    200 with the Export*ServiceResponse in the request's encoding, once the data is
    committed; 400 malformed, 413 over --max-body (received or decompressed) or over
    --max-records spans or log records (capped at --max-pending; the answer names the
    limit), 415 other content types or encodings, 503 + Retry-After when the write queue
    (--max-pending rows, counted before the rows are built) is full.
    Items with invalid ids or timestamps over 2**63 - 1 ns (SQLite's INTEGER) are dropped
    and counted in the 200's partialSuccess. Each request is written in its own savepoint
    of the group commit: one that cannot be written fails alone.

Query API (JSON):
    GET /health
    GET /api/traces?service=&since=&until=&min_duration_ms=&status=ok|error&limit=
        trace summaries, newest first (since/until: unix seconds, on the trace's start)
    GET /api/traces/{trace_id}   {"trace_id", "spans": [...]} ordered by start; 404 if unknown
    GET /api/logs?request_id=&trace_id=&service=&instance=&level=&since=&until=&contains=&limit=
        the newest `limit` matching records, oldest first; level = that level or worse
    GET /api/services, GET /api/stats
    A bad parameter gets 400 with {"error": "... one of ..."}: limit is ASCII digits,
    since/until within +-9e9 s, min_duration_ms within 0..9e12.

Retention (retention.py), in small slices so that ingest never waits for a big delete:
a write that takes the used pages over --max-bytes also deletes, in the same transaction,
the earliest received spans and logs (ranges of arrival ids, a little more than the
excess); every --prune-interval seconds, traces (whole) and logs older than --max-age go.
Freed pages are reused by new data, and given back to the file system (incremental vacuum,
then the WAL is truncated) once no data has arrived for an interval. The WAL is
checkpointed and cut back every quarter of --max-bytes (at least 1 MiB, at most 8 MiB), so
the files (DB + WAL) stay within --max-bytes + that WAL limit + about two write batches (at
most 10,000 rows each, a few MiB), as long as no reader holds a snapshot for long (that
delays checkpoints). A trace cut by a size slice leaves the query API whole; its spans that
arrived after the cut stay on disk, unreachable, until a later slice.

Run: python -m labstack.telemetry --db PATH [--host 127.0.0.1] [--port 4318]
     [--max-age 3600] [--max-bytes 268435456] [--prune-interval 5] [--max-body 16777216]
     [--max-pending 100000] [--max-records 50000]
"""
