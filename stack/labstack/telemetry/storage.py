"""The write side: one writer thread commits queued requests together (group commit).

All writes go through one thread, so inserts and pruning never contend for the
write lock; readers use their own connections (WAL lets them run alongside).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from . import schema
from .retention import Retention, used_bytes

log = logging.getLogger("labstack.telemetry")

WRITE_BATCH = 10_000  # rows committed together at most (group commit of queued requests)
CACHE_KIB = 32 * 1024  # the writer's page cache (SQLite's default is 2 MiB)


class Busy(Exception):
    """The write queue is full: the client should retry later (HTTP 503)."""


@dataclass
class Settings:
    path: Path
    max_age: float = 3600.0  # seconds
    max_bytes: int = 256 * 1024 * 1024
    prune_interval: float = 5.0  # seconds
    max_pending: int = 100_000  # queued rows before new requests get 503


class Store:
    """Owns the database file: queues writes, commits them in one thread, prunes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn = schema.connect(settings.path)
        # auto_vacuum must be chosen before the first table exists: it lets pruning give
        # pages back to the file system (incremental_vacuum) instead of only reusing them.
        self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        self.conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives a crash of this process (not a power cut).
        self.conn.execute("PRAGMA synchronous = NORMAL")
        # The WAL is checkpointed, and cut back to this size, every wal_limit bytes: often
        # enough that each checkpoint is a short pause for the writer (at most 8 MiB).
        wal_limit = min(max(settings.max_bytes // 4, 1 << 20), 8 << 20)
        self.conn.execute(f"PRAGMA journal_size_limit = {wal_limit}")
        page_size = self.conn.execute("PRAGMA page_size").fetchone()[0]
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {wal_limit // page_size}")
        # The trace summaries' index is looked up at random on every write: keep it cached.
        self.conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        schema.create(self.conn)
        self.next_id = schema.next_span_id(self.conn)
        self.counts = {
            "spans": self.conn.execute("SELECT count(*) FROM spans").fetchone()[0],
            "logs": self.conn.execute("SELECT count(*) FROM logs").fetchone()[0],
        }
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.pruned: Counter[str] = Counter()
        self.retention = Retention(self.conn, settings.path, settings.max_bytes,
                                   settings.max_age, self._account)  # fmt: skip
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
        next_tick = time.monotonic()
        stopping = wrote = False
        while not stopping:
            try:
                item = self._queue.get(timeout=max(next_tick - time.monotonic(), 0.0))
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
                wrote = True
            if time.monotonic() >= next_tick:
                try:
                    self.retention.tick(self.counts)
                    if not wrote:
                        self.retention.give_back()
                except sqlite3.Error:
                    log.exception("pruning failed; will retry at the next interval")
                next_tick = time.monotonic() + self.settings.prune_interval
                wrote = False

    def _write(self, batch: list[tuple[str, list[tuple], Future]]) -> None:
        """Commit the batch together, with the room it needs under the size cap; a request
        that cannot be written fails alone."""
        failed: dict[int, Exception] = {}
        pruned: Counter[str] = Counter()
        next_id = self.next_id
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            for i, (kind, rows, _) in enumerate(batch):
                self.conn.execute("SAVEPOINT request")
                try:
                    next_id = self._insert(kind, rows, next_id)
                except (sqlite3.Error, OverflowError) as exc:  # e.g. a value SQLite cannot hold
                    log.exception("writing a request of %d %s failed", len(rows), kind)
                    self.conn.execute("ROLLBACK TO request")
                    failed[i] = exc
                self.conn.execute("RELEASE request")
            pruned = self._make_room(batch, failed)
            self.conn.execute("COMMIT")
        except Exception as exc:  # noqa: BLE001 - the clients must hear of it, not lose it
            log.exception("writing %d requests failed", len(batch))
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            failed = dict.fromkeys(range(len(batch)), exc)
            pruned = Counter()
        else:
            self.next_id = next_id  # ids of rolled-back requests stay unused: harmless gaps
        for i, (kind, rows, future) in enumerate(batch):
            self.release(len(rows))
            if i in failed:
                future.set_exception(failed[i])
                continue
            self.counts[kind] += len(rows)
            self.accepted[kind] += len(rows)
            future.set_result(None)
        self._account(pruned)

    def _make_room(self, batch: list, failed: dict[int, Exception]) -> Counter[str]:
        """Size pruning inside the write's transaction; if it fails, the rows still go in."""
        written = Counter(self.counts)
        for i, (kind, rows, _) in enumerate(batch):
            if i not in failed:
                written[kind] += len(rows)
        self.conn.execute("SAVEPOINT prune")
        try:
            pruned = self.retention.make_room(written["spans"], written["logs"])
        except sqlite3.Error:
            log.exception("pruning to the size cap failed; the next write tries again")
            self.conn.execute("ROLLBACK TO prune")
            pruned = Counter()
        self.conn.execute("RELEASE prune")
        return pruned

    def _account(self, pruned: Counter[str]) -> None:
        """Count committed deletions ({"spans_by_size": n, ...})."""
        for key, n in pruned.items():
            if n:
                self.counts[key.split("_by_")[0]] -= n
                self.pruned[key] += n

    def _insert(self, kind: str, rows: list[tuple], next_id: int) -> int:
        """Insert one request's rows; returns the next free span id."""
        if kind == "spans":
            self._insert_spans(rows, next_id)
            next_id += len(rows)
        else:
            self.conn.executemany(schema.INSERT_LOG, rows)
        column = 3 if kind == "spans" else 1  # where the service name is in a row
        names = {(row[column],) for row in rows}
        self.conn.executemany("INSERT OR IGNORE INTO services VALUES (?)", names)
        return next_id

    def _insert_spans(self, rows: list[tuple], first_id: int) -> None:
        self.conn.executemany(
            schema.INSERT_SPAN, [(span_id, *row) for span_id, row in enumerate(rows, first_id)]
        )
        # One summary per (trace, service) in this batch, merged into the trace's row.
        groups: dict[tuple[str, str], list] = {}
        for span_id, row in enumerate(rows, first_id):
            trace_id, _, parent, service, _, name, _, start, end, _, status, *_ = row
            group = groups.get((trace_id, service))
            if group is None:
                group = groups[(trace_id, service)] = [
                    trace_id, start, end, 1, int(status == "ERROR"),
                    f"{schema.SEP}{service}{schema.SEP}", None, None, service, name,
                    span_id, span_id,
                ]  # fmt: skip
            else:
                group[3] += 1
                group[4] |= status == "ERROR"
                group[2] = max(group[2], end)
                group[11] = span_id
                if start < group[1]:
                    group[1], group[8], group[9] = start, service, name
            if not parent and group[6] is None:
                group[6], group[7] = service, name
        self.conn.executemany(schema.TRACE_UPSERT, groups.values())
