"""Read queries behind the JSON API: trace summaries, one trace's spans, log records."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .decode import LEVELS
from .schema import SEP, TRACE_SPANS

NS = 1_000_000_000


def traces(
    conn: sqlite3.Connection,
    *,
    service: str | None = None,
    since: float | None = None,
    until: float | None = None,
    min_duration_ms: float | None = None,
    error: bool | None = None,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Trace summaries, newest first; since/until bound the trace's start (unix seconds)."""
    where: list[str] = ["1"]
    args: list[str | int] = []
    if service:
        where.append("instr(services, ?) > 0")
        args.append(f"{SEP}{service}{SEP}")
    _time_range("start_ns", since, until, where, args)
    if min_duration_ms is not None:
        where.append("end_ns - start_ns >= ?")
        args.append(int(min_duration_ms * 1_000_000))
    if error is not None:
        where.append("error = ?")
        args.append(int(error))
    rows = conn.execute(
        f"SELECT trace_id, start_ns, end_ns, span_count, error, services,"
        f" coalesce(root_service, first_service), coalesce(root_name, first_name)"
        f" FROM traces WHERE {' AND '.join(where)} ORDER BY start_ns DESC LIMIT ?",
        (*args, limit),
    )
    return [
        {
            "trace_id": trace_id,
            "root_service": root_service,
            "root_name": root_name,
            "start": start / NS,
            "duration_ms": (end - start) / 1e6,
            "span_count": count,
            "services": sorted(filter(None, services.split(SEP))),
            "error": bool(err),
        }
        for trace_id, start, end, count, err, services, root_service, root_name in rows
    ]


SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "service", "instance", "name", "kind",
    "start_ns", "end_ns", "duration_ns", "status", "status_message",
    "attributes", "resource", "events",
)  # fmt: skip


def trace(conn: sqlite3.Connection, trace_id: str) -> list[dict[str, Any]]:
    """The trace's spans ordered by start (empty if the trace is unknown)."""
    rows = conn.execute(
        TRACE_SPANS.format(columns=", ".join(SPAN_COLUMNS)) + " ORDER BY start_ns, span_id",
        {"trace_id": trace_id},
    )
    spans = []
    for row in rows:
        span = dict(zip(SPAN_COLUMNS, row, strict=True))
        span["duration_ms"] = span.pop("duration_ns") / 1e6
        for key in ("attributes", "resource", "events"):
            span[key] = json.loads(span[key])
        spans.append(span)
    return spans


LOG_COLUMNS = (
    "time_ns", "service", "instance", "level", "severity_number", "body",
    "trace_id", "span_id", "request_id", "attributes", "resource",
)  # fmt: skip


def logs(
    conn: sqlite3.Connection,
    *,
    request_id: str | None = None,
    trace_id: str | None = None,
    service: str | None = None,
    instance: str | None = None,
    level: str | None = None,
    since: float | None = None,
    until: float | None = None,
    contains: str | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """The newest `limit` matching records, oldest first (like `tail`)."""
    where: list[str] = ["1"]
    args: list[str | int] = []
    for column, value in (("request_id", request_id), ("trace_id", trace_id),
                          ("service", service), ("instance", instance)):  # fmt: skip
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    if level:
        where.append("level_rank >= ?")
        args.append(LEVELS.index(level))
    _time_range("time_ns", since, until, where, args)
    if contains:
        # LIKE is case-insensitive for ASCII; escape its wildcards so the text is literal.
        escaped = contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("body LIKE ? ESCAPE '\\'")
        args.append(f"%{escaped}%")
    rows = conn.execute(
        f"SELECT {', '.join(LOG_COLUMNS)} FROM logs WHERE {' AND '.join(where)}"
        " ORDER BY time_ns DESC, rowid DESC LIMIT ?",
        (*args, limit),
    ).fetchall()
    records = []
    for row in reversed(rows):
        record = dict(zip(LOG_COLUMNS, row, strict=True))
        record["time"] = record["time_ns"] / NS
        record["attributes"] = json.loads(record["attributes"])
        record["resource"] = json.loads(record["resource"])
        records.append(record)
    return records


def _time_range(
    column: str, since: float | None, until: float | None, where: list[str], args: list
) -> None:
    """Add `since <= column <= until` (unix seconds; either may be absent) to a query."""
    if since is not None:
        where.append(f"{column} >= ?")
        args.append(int(since * NS))
    if until is not None:
        where.append(f"{column} <= ?")
        args.append(int(until * NS))


def services(conn: sqlite3.Connection) -> list[str]:
    return [name for (name,) in conn.execute("SELECT name FROM services ORDER BY name")]
