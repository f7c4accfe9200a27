"""Bounded retention in small slices: by size inside each write, by age on a timer.

Size: a write that takes the used pages over --max-bytes also deletes, in its own
transaction, the earliest received data: a range of span ids and of log rowids (both in
arrival order) a little larger than the excess, so the store never stops for one big
delete. Age: every tick removes traces (whole) and logs older than --max-age, a slice at a
time. Freed pages are reused by new data; once no data has arrived for a tick, they go back
to the file system (incremental vacuum) and the WAL is truncated.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .schema import BLOCK, BLOCK_BITS

PRUNE_BATCH = 5000  # traces or logs deleted per age slice: keeps each pause short
PRUNE_ROUNDS = 20  # slices per tick at most; the next tick carries on
VACUUM_PAGES = 4096  # pages given back to the file system per idle tick


class Retention:
    """Deletes what is over the size cap or the age limit; reports each deletion, once it
    is committed, to `account` ({"spans_by_size": n, ...})."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        max_bytes: int,
        max_age: float,
        account: Callable[[Counter[str]], None],
    ) -> None:
        self.conn, self.path = conn, path
        self.max_bytes, self.max_age = max_bytes, max_age
        # each size slice frees this much beyond the excess, so that the next write does
        # not go straight back over the cap
        self.headroom = max_bytes // 32
        self.account = account

    def make_room(self, spans: int, logs: int) -> Counter[str]:
        """Inside the caller's transaction: if the used pages exceed the cap, delete the
        earliest received share of the `spans` and `logs` stored; returns what went (for the
        caller to account once it commits)."""
        used = used_bytes(self.conn)
        deleted: Counter[str] = Counter()
        if used <= self.max_bytes:
            return deleted
        share = min((used - self.max_bytes + self.headroom) / used, 1.0)
        if spans:
            first = self.conn.execute("SELECT min(id) FROM spans").fetchone()[0] or 0
            cut = first + math.ceil(share * spans)
            deleted["spans_by_size"] = self.conn.execute(
                "DELETE FROM spans WHERE id < ?", (cut,)
            ).rowcount
            # a trace cut in two goes whole from the query API; its spans received after
            # the cut become unreachable and go with a later slice (or `orphans`)
            self.conn.execute("DELETE FROM traces WHERE first_id < ?", (cut,))
        if logs:
            deleted["logs_by_size"] = self.conn.execute(
                "DELETE FROM logs WHERE rowid < (SELECT min(rowid) FROM logs) + ?",
                (math.ceil(share * logs),),
            ).rowcount
        return deleted

    def tick(self, counts: dict[str, int]) -> None:
        """Age slices, then size slices while over the cap, then unreachable spans."""
        cutoff = time.time_ns() - int(self.max_age * 1e9)
        for _ in range(PRUNE_ROUNDS):
            if not self._transaction(lambda: self._age_slice(cutoff)):
                break
        for _ in range(PRUNE_ROUNDS):
            if not self._transaction(lambda: self.make_room(counts["spans"], counts["logs"])):
                break
        self._transaction(self._orphans)

    def give_back(self) -> None:
        """When idle: return free pages to the file system, a slice a tick, and cut the WAL
        back to nothing (a checkpoint waits for readers, so never while data flows)."""
        if self.conn.execute("PRAGMA freelist_count").fetchone()[0]:
            # executescript runs the pragma to the end; execute() would free one page a step
            self.conn.executescript(f"PRAGMA incremental_vacuum({VACUUM_PAGES})")
        wal = Path(f"{self.path}-wal")
        if wal.exists() and wal.stat().st_size:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _transaction(self, delete: Callable[[], Counter[str]]) -> int:
        """Run `delete` in its own transaction; account for it; how many rows went."""
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            deleted = delete()
        self.account(deleted)
        return deleted.total()

    def _age_slice(self, cutoff_ns: int) -> Counter[str]:
        traces = self.conn.execute(
            "SELECT trace_id, first_id, last_id FROM traces WHERE start_ns < ?"
            " ORDER BY start_ns LIMIT ?",
            (cutoff_ns, PRUNE_BATCH),
        ).fetchall()
        seeks = [
            (block, trace_id)
            for trace_id, first, last in traces
            for block in range(first >> BLOCK_BITS, (last >> BLOCK_BITS) + 1)
        ]
        before = self.conn.total_changes
        self.conn.executemany(f"DELETE FROM spans WHERE {BLOCK} = ? AND trace_id = ?", seeks)
        deleted: Counter[str] = Counter(spans_by_age=self.conn.total_changes - before)
        self.conn.executemany("DELETE FROM traces WHERE trace_id = ?", [t[:1] for t in traces])
        deleted["logs_by_age"] = self.conn.execute(
            "DELETE FROM logs WHERE rowid IN (SELECT rowid FROM logs WHERE time_ns < ? LIMIT ?)",
            (cutoff_ns, PRUNE_BATCH),
        ).rowcount
        return deleted

    def _orphans(self) -> Counter[str]:
        """Spans received before the first span of every trace left belong to none: what
        size slices left of the traces they cut."""
        orphans = self.conn.execute(
            "DELETE FROM spans WHERE id < coalesce((SELECT min(first_id) FROM traces),"
            " (SELECT max(id) + 1 FROM spans))"
        ).rowcount
        return Counter(spans_by_size=orphans)


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes in pages that hold data: what --max-bytes limits (free pages are reusable)."""
    pages, free, size = (
        conn.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("page_count", "freelist_count", "page_size")
    )
    return (pages - free) * size
