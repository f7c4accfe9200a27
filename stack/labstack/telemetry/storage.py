"""The SQLite store: schema, one writer thread (group commit), bounded retention, counters.

All writes go through one thread, so inserts and pruning never contend for the
write lock; readers use their own connections (WAL lets them run alongside).
"""

from __future__ import annotations

import logging
import math
import queue
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("labstack.telemetry")

SEP = "\x1f"  # separates service names in traces.services; cannot appear in a sane name

SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT NOT NULL,
    service TEXT NOT NULL, instance TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
    start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL, duration_ns INTEGER NOT NULL,
    status TEXT NOT NULL, status_message TEXT NOT NULL,
    attributes TEXT NOT NULL, resource TEXT NOT NULL, events TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spans_trace ON spans (trace_id);
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
CREATE INDEX IF NOT EXISTS spans_service ON spans (service, start_ns);

-- One summary row per trace, kept up to date on insert, so listing traces never
-- aggregates the spans table.
CREATE TABLE IF NOT EXISTS traces (
    trace_id TEXT PRIMARY KEY, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    span_count INTEGER NOT NULL, error INTEGER NOT NULL, services TEXT NOT NULL,
    root_service TEXT, root_name TEXT, first_service TEXT NOT NULL, first_name TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_start ON traces (start_ns);

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

TRACE_UPSERT = """
INSERT INTO traces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
                      THEN excluded.first_name ELSE first_name END
"""

PRUNE_BATCH = 5000  # rows (logs) or traces deleted per statement: keeps each pause short
PRUNE_ROUNDS = 20  # statements per prune tick at most; the next tick carries on
WRITE_BATCH = 20_000  # rows committed together at most (group commit of queued requests)


class Busy(Exception):
    """The write queue is full: the client should retry later (HTTP 503)."""


@dataclass
class Settings:
    path: Path
    max_age: float = 3600.0  # seconds
    max_bytes: int = 256 * 1024 * 1024
    prune_interval: float = 5.0  # seconds
    max_pending: int = 100_000  # queued rows before new requests get 503


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 10000")
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    return conn


class Store:
    """Owns the database file: queues writes, commits them in one thread, prunes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn = connect(settings.path)
        # auto_vacuum must be chosen before the first table exists: it lets pruning give
        # pages back to the file system (incremental_vacuum) instead of only reusing them.
        self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        self.conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives a crash of this process (not a power cut).
        self.conn.execute("PRAGMA synchronous = NORMAL")
        # The WAL is checkpointed, and cut back to this size, every wal_limit bytes, so
        # that it adds at most about a quarter to --max-bytes (plus one write batch).
        wal_limit = min(max(settings.max_bytes // 4, 1 << 20), 64 << 20)
        self.conn.execute(f"PRAGMA journal_size_limit = {wal_limit}")
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {wal_limit // page_size}")
        self.conn.executescript(SCHEMA)
        self.counts = {
            "spans": self.conn.execute("SELECT count(*) FROM spans").fetchone()[0],
            "logs": self.conn.execute("SELECT count(*) FROM logs").fetchone()[0],
        }
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.pruned: Counter[str] = Counter()
        self._queue: queue.Queue[tuple[str, list[tuple], Future] | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("storing in %s: %d spans and %d logs already there", self.settings.path,
                 self.counts["spans"], self.counts["logs"])  # fmt: skip

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then close."""
        self._queue.put(None)
        self._thread.join(timeout)
        self.conn.close()
        log.info("stopped with %(spans)d spans and %(logs)d logs stored", self.counts)

    def reserve(self, items: int) -> None:
        """Count `items` rows as pending before they are built; Busy if that is too many."""
        with self._lock:
            if self._pending + items > self.settings.max_pending:
                raise Busy(f"{self._pending} rows waiting to be written")
            self._pending += items

    def release(self, items: int) -> None:
        """Give back reserved rows that will not be submitted."""
        with self._lock:
            self._pending -= items

    def submit(self, kind: str, rows: list[tuple], reserved: int) -> Future:
        """Queue rows ("spans" or "logs") within `reserved`; the future completes once
        they are committed."""
        self.release(reserved - len(rows))
        future: Future = Future()
        if not rows:
            future.set_result(None)
            return future
        self._queue.put((kind, rows, future))
        return future

    def reject(self, reason: str, items: int = 1) -> None:
        self.rejected[reason] += items

    def stats(self, reader: sqlite3.Connection) -> dict:
        """Counters, and the database's size as seen through `reader` (not the writer's)."""
        path = self.settings.path
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        return {
            "spans": self.counts["spans"],
            "logs": self.counts["logs"],
            "accepted": dict(self.accepted),
            "rejected": dict(self.rejected),
            "pruned": dict(self.pruned),
            "pending_rows": self._pending,
            "db_bytes": sum(f.stat().st_size for f in files if f.exists()),
            "used_bytes": used_bytes(reader),
            "max_bytes": self.settings.max_bytes,
            "max_age_s": self.settings.max_age,
        }

    # --- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        next_prune = time.monotonic()
        stopping = False
        while not stopping:
            try:
                item = self._queue.get(timeout=max(next_prune - time.monotonic(), 0.0))
            except queue.Empty:
                item = None
            else:
                stopping = item is None
            batch = [item] if item else []
            size = len(item[1]) if item else 0
            while size < WRITE_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    continue  # still write what came before the stop marker
                batch.append(item)
                size += len(item[1])
            if batch:
                self._write(batch)
            over = bool(batch) and used_bytes(self.conn) > self.settings.max_bytes
            if over or time.monotonic() >= next_prune:
                try:
                    self.prune()
                except sqlite3.Error:
                    log.exception("pruning failed; will retry at the next interval")
                next_prune = time.monotonic() + self.settings.prune_interval

    def _write(self, batch: list[tuple[str, list[tuple], Future]]) -> None:
        """Commit the batch together; a request that cannot be written fails alone."""
        failed: dict[int, Exception] = {}
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for i, (kind, rows, _) in enumerate(batch):
                self.conn.execute("SAVEPOINT request")
                try:
                    self._insert(kind, rows)
                except (sqlite3.Error, OverflowError) as exc:  # e.g. a value SQLite cannot hold
                    log.exception("writing a request of %d %s failed", len(rows), kind)
                    self.conn.execute("ROLLBACK TO request")
                    failed[i] = exc
                self.conn.execute("RELEASE request")
            self.conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - the clients must hear of it, not lose it
            log.exception("writing %d requests failed", len(batch))
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            failed = dict.fromkeys(range(len(batch)), exc)
        for i, (kind, rows, future) in enumerate(batch):
            self.release(len(rows))
            if i in failed:
                future.set_exception(failed[i])
                continue
            self.counts[kind] += len(rows)
            self.accepted[kind] += len(rows)
            future.set_result(None)

    def _insert(self, kind: str, rows: list[tuple]) -> None:
        if kind == "spans":
            self._insert_spans(rows)
        else:
            self.conn.executemany(f"INSERT INTO logs VALUES ({', '.join('?' * 12)})", rows)
        column = 3 if kind == "spans" else 1  # where the service name is in a row
        names = {(row[column],) for row in rows}
        self.conn.executemany("INSERT OR IGNORE INTO services VALUES (?)", names)

    def _insert_spans(self, rows: list[tuple]) -> None:
        self.conn.executemany(f"INSERT INTO spans VALUES ({', '.join('?' * 15)})", rows)
        # One summary per (trace, service) in this batch, merged into the trace's row.
        groups: dict[tuple[str, str], list] = {}
        for trace_id, _, parent, service, _, name, _, start, end, _, status, *_ in rows:
            group = groups.get((trace_id, service))
            if group is None:
                groups[(trace_id, service)] = [
                    trace_id,
                    start,
                    end,
                    1,
                    int(status == "ERROR"),
                    f"{SEP}{service}{SEP}",
                    None,
                    None,
                    service,
                    name,
                ]
                group = groups[(trace_id, service)]
            else:
                group[3] += 1
                group[4] |= status == "ERROR"
                group[2] = max(group[2], end)
                if start < group[1]:
                    group[1], group[8], group[9] = start, service, name
            if not parent and group[6] is None:
                group[6], group[7] = service, name
        self.conn.executemany(TRACE_UPSERT, groups.values())

    # --- retention -----------------------------------------------------------------------

    def prune(self) -> None:
        """Drop what is older than max_age, then the oldest data while over max_bytes."""
        cutoff = time.time_ns() - int(self.settings.max_age * 1e9)
        for _ in range(PRUNE_ROUNDS):
            ids = self._oldest_traces("WHERE start_ns < ?", (cutoff,), PRUNE_BATCH)
            deleted = self._delete_traces(ids, "age")
            deleted += self._delete_logs("WHERE time_ns < ?", (cutoff,), PRUNE_BATCH, "age")
            if not deleted:
                break
        for _ in range(PRUNE_ROUNDS):
            excess = used_bytes(self.conn) - self.settings.max_bytes
            if excess <= 0:
                break
            # Delete the same share of traces and of logs, a little more than the excess,
            # so that the next insert does not put the store straight back over.
            share = min((excess + self.settings.max_bytes * 0.1) / used_bytes(self.conn), 1.0)
            traces = self.conn.execute("SELECT count(*) FROM traces").fetchone()[0]
            n_traces = min(math.ceil(share * traces), PRUNE_BATCH)
            n_logs = min(math.ceil(share * self.counts["logs"]), PRUNE_BATCH)
            deleted = self._delete_traces(self._oldest_traces("", (), n_traces), "size")
            deleted += self._delete_logs("ORDER BY rowid", (), n_logs, "size")
            if not deleted:
                break
        if self.conn.execute("PRAGMA freelist_count").fetchone()[0]:
            # Give all freed pages back to the file system (executescript runs the pragma
            # to the end; execute() would free one page per step), then cut the WAL back.
            self.conn.executescript("PRAGMA incremental_vacuum")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _oldest_traces(self, where: str, args: tuple, limit: int) -> list[tuple[str]]:
        sql = f"SELECT trace_id FROM traces {where} ORDER BY start_ns LIMIT ?"
        return self.conn.execute(sql, (*args, limit)).fetchall()

    def _delete_traces(self, ids: list[tuple[str]], reason: str) -> int:
        if not ids:
            return 0
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            before = self.conn.total_changes
            self.conn.executemany("DELETE FROM spans WHERE trace_id = ?", ids)
            spans = self.conn.total_changes - before
            self.conn.executemany("DELETE FROM traces WHERE trace_id = ?", ids)
        self.counts["spans"] -= spans
        self.pruned[f"spans_by_{reason}"] += spans
        return len(ids)

    def _delete_logs(self, selection: str, args: tuple, limit: int, reason: str) -> int:
        if limit <= 0:
            return 0
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            deleted = self.conn.execute(
                f"DELETE FROM logs WHERE rowid IN (SELECT rowid FROM logs {selection} LIMIT ?)",
                (*args, limit),
            ).rowcount
        if deleted:
            self.counts["logs"] -= deleted
            self.pruned[f"logs_by_{reason}"] += deleted
        return deleted


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes in pages that hold data: what --max-bytes limits (free pages are reusable)."""
    pages, free, size = (
        conn.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("page_count", "freelist_count", "page_size")
    )
    return (pages - free) * size
