"""The lab's telemetry store: an OTLP/HTTP receiver that keeps traces and logs in SQLite.

No trace or log backend installs here without Docker, so this small one stands in.

Accepts (OTLP/HTTP, loopback only):
    POST /v1/traces, /v1/logs   application/x-protobuf or application/json (OTLP/JSON: hex
                                ids, lowerCamelCase or snake_case), optionally gzip.
    200 with the Export*ServiceResponse in the request's encoding, once the data is
    committed; 400 malformed, 413 over --max-body (received or decompressed), 415 other
    content types or encodings, 503 + Retry-After when the write queue is full.

Query API (JSON):
    GET /health
    GET /api/traces?service=&since=&until=&min_duration_ms=&status=ok|error&limit=
        trace summaries, newest first (since/until: unix seconds, on the trace's start)
    GET /api/traces/{trace_id}   {"trace_id", "spans": [...]} ordered by start; 404 if unknown
    GET /api/logs?request_id=&trace_id=&service=&instance=&level=&since=&until=&contains=&limit=
        the newest `limit` matching records, oldest first; level = that level or worse
    GET /api/services, GET /api/stats
    A bad parameter gets 400 with {"error": "... one of ..."}.

Retention: every --prune-interval seconds, traces and logs older than --max-age go, then
the oldest data while the database's used pages exceed --max-bytes; freed pages are
returned to the file system (incremental vacuum).

Run: python -m labstack.telemetry --db PATH [--host 127.0.0.1] [--port 4318]
     [--max-age 3600] [--max-bytes 268435456] [--prune-interval 5] [--max-body 16777216]
     [--max-pending 100000]
"""
