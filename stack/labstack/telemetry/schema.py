"""The SQLite schema: tables, indexes, the trace-summary upsert, and opening a database.

Spans get ids in the order they arrive (the writer numbers them). They are indexed by
(block of 4096 ids, trace id) rather than by trace id alone: new entries then land in the
newest block's few pages, where a random trace-id index would dirty a page per span (that
index was most of the insert cost). A trace's summary row keeps the ids of its first and
last span, so its spans are found with one index seek per block between them.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

log = logging.getLogger("labstack.telemetry")

VERSION = 2  # PRAGMA user_version; a file with another version is emptied at start
SEP = "\x1f"  # separates service names in traces.services; cannot appear in a sane name
BLOCK_BITS = 12
BLOCK = f"(id >> {BLOCK_BITS})"  # the spans index's first column, as SQL

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS spans (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT NOT NULL,
    service TEXT NOT NULL, instance TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, duration_ns INTEGER NOT NULL,
    status TEXT NOT NULL, status_message TEXT NOT NULL,
    attributes TEXT NOT NULL, resource TEXT NOT NULL, events TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_trace ON spans ({BLOCK}, trace_id);

-- One summary row per trace, kept up to date on insert, so listing traces never
-- aggregates the spans table; first_id/last_id bound the ids of its spans.
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    span_count INTEGER NOT NULL, error INTEGER NOT NULL, services TEXT NOT NULL,
    root_service TEXT, root_name TEXT, first_service TEXT NOT NULL, first_name TEXT NOT NULL,
    first_id INTEGER NOT NULL, last_id INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_start ON traces (start_ns);
CREATE INDEX IF NOT EXISTS traces_first ON traces (first_id);

CREATE TABLE IF NOT EXISTS logs (
    time_ns INTEGER NOT NULL, service TEXT NOT NULL, instance TEXT NOT NULL,
    level TEXT NOT NULL, level_rank INTEGER NOT NULL, severity_number INTEGER NOT NULL,
    body TEXT NOT NULL, trace_id TEXT NOT NULL, span_id TEXT NOT NULL, request_id TEXT NOT NULL,
    attributes TEXT NOT NULL, resource TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_time ON logs (time_ns);
CREATE INDEX IF NOT EXISTS logs_request ON logs (request_id) WHERE request_id != '';
CREATE INDEX IF NOT EXISTS logs_trace ON logs (trace_id) WHERE trace_id != '';

CREATE TABLE IF NOT EXISTS services (name TEXT PRIMARY KEY);
"""

TABLES = ("spans", "traces", "logs", "services")

INSERT_SPAN = f"INSERT INTO spans VALUES ({', '.join('?' * 16)})"
INSERT_LOG = f"INSERT INTO logs VALUES ({', '.join('?' * 12)})"

TRACE_UPSERT = """
INSERT INTO traces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trace_id) DO UPDATE SET
    start_ns = min(start_ns, excluded.start_ns),
    end_ns = max(end_ns, excluded.end_ns),
    span_count = span_count + excluded.span_count,
    error = max(error, excluded.error),
    services = CASE WHEN instr(services, excluded.services) THEN services
                    ELSE services || substr(excluded.services, 2) END,
    root_service = coalesce(root_service, excluded.root_service),
    root_name = coalesce(root_name, excluded.root_name),
    first_service = CASE WHEN excluded.start_ns < start_ns
                         THEN excluded.first_service ELSE first_service END,
    first_name = CASE WHEN excluded.start_ns < start_ns
                      THEN excluded.first_name ELSE first_name END,
    first_id = min(first_id, excluded.first_id),
    last_id = max(last_id, excluded.last_id)
"""

# The spans of one trace (:trace_id), in one statement so that the summary and the spans
# come from the same snapshot: one index seek per block from its first span to its last.
TRACE_SPANS = f"""
WITH RECURSIVE
    bounds(low, high) AS (
        SELECT first_id >> {BLOCK_BITS}, last_id >> {BLOCK_BITS}
        FROM traces WHERE trace_id = :trace_id),
    blocks(block) AS (
        SELECT low FROM bounds
        UNION ALL SELECT block + 1 FROM blocks, bounds WHERE block < high)
SELECT {{columns}} FROM spans
WHERE {BLOCK} IN blocks AND trace_id = :trace_id
"""


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    return conn


def create(conn: sqlite3.Connection) -> None:
    """The tables and indexes; a file written by another version of the store is emptied
    first (telemetry is short-lived, and a fresh `labkit up` empties it anyway)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {
        name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if version != VERSION and tables & set(TABLES):
        path = conn.execute("PRAGMA database_list").fetchone()[2]
        log.warning("%s has another version's schema (%d, not %d): its data is discarded",
                    path, version, VERSION)  # fmt: skip
        for table in TABLES:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {VERSION}")


def next_span_id(conn: sqlite3.Connection) -> int:
    """The id the next span gets: above every span's and every summary's."""
    spans, traces = conn.execute(
        "SELECT (SELECT max(id) FROM spans), (SELECT max(last_id) FROM traces)"
    ).fetchone()
    return max(spans or 0, traces or 0) + 1
