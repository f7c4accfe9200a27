"""The service registry as learners see it: etcd records kept alive by leases.

Each instance registers itself (see stack/labstack/runtime.py) under
`registry/<service>/<instance>/<pid>` (labkit.keyspace) with a lease it refreshes while healthy.
A crashed process stops refreshing, so its record vanishes when the lease
expires; a graceful stop revokes the lease and the record vanishes at once.
"""

from __future__ import annotations

import json
import threading
import time

import etcd3gw
import pandas as pd

from .keyspace import registry_prefix
from .kv import etcd_client

PREFIX = registry_prefix()
COLUMNS = ["service", "instance", "slot", "version", "address", "pid", "age_s", "lease_ttl_s"]


class Registry:
    def __init__(self, client: etcd3gw.Etcd3Client | None = None):
        self.etcd = client or etcd_client()

    def records(self, service: str | None = None) -> list[dict]:
        """Raw registry records (dicts as the instances wrote them), plus their lease id."""
        prefix = registry_prefix(service)
        records = []
        for value, meta in self.etcd.get_prefix(prefix):
            record = json.loads(value)
            record["lease"] = int(meta.get("lease", 0))
            records.append(record)
        return records

    def instances(self, service: str | None = None, with_ttl: bool = True) -> pd.DataFrame:
        """One row per registered instance, with its lease's remaining time to live."""
        now = time.time()
        rows = []
        for record in self.records(service):
            ttl = self._ttl(record["lease"]) if with_ttl else None
            rows.append(
                {
                    "service": record["service"],
                    "instance": record["instance"],
                    "slot": record["slot"],
                    "version": record["version"],
                    "address": record["address"],
                    "pid": record["pid"],
                    "age_s": round(now - record["started_at"], 1),
                    "lease_ttl_s": ttl,
                }
            )
        frame = pd.DataFrame(rows, columns=COLUMNS)
        return frame.sort_values(["service", "slot", "age_s"]).reset_index(drop=True)

    def watch(self, service: str | None = None) -> RegistryWatch:
        """Start recording registry events (instances appearing and disappearing)."""
        return RegistryWatch(service)

    def _ttl(self, lease_id: int) -> int | None:
        if not lease_id:
            return None
        result = self.etcd.post(self.etcd.get_url("/kv/lease/timetolive"), json={"ID": lease_id})
        # the lease may expire between listing and asking: etcd then omits TTL or says -1
        ttl = int(result.get("TTL", -1))
        return ttl if ttl >= 0 else None


class RegistryWatch:
    """Registry events as they happen, recorded by a background thread.

    Use as a context manager, or call stop(); `events()` can be read at any time.
    Lease refreshes write nothing, so only arrivals ("up") and departures
    ("down": a revoked or expired lease) show up.
    """

    EVENT_COLUMNS = ["time", "t", "event", "service", "instance", "pid"]

    def __init__(self, service: str | None = None):
        self.started = time.time()
        self._rows: list[dict] = []
        prefix = registry_prefix(service)
        # a client of its own: the watch holds its HTTP stream open
        self._events, self._cancel = etcd_client(timeout=None).watch_prefix(prefix)
        self._thread = threading.Thread(target=self._record, daemon=True, name="registry-watch")
        self._thread.start()

    def _record(self) -> None:
        for event in self._events:
            now = time.time()
            _, service, instance, pid = event["kv"]["key"].decode().split("/")
            self._rows.append({
                "time": now,
                "t": now - self.started,
                # PUT events carry no type in etcd's JSON gateway
                "event": "down" if event.get("type") == "DELETE" else "up",
                "service": service,
                "instance": instance,
                "pid": int(pid),
            })

    def events(self) -> pd.DataFrame:
        """One row per event: time (epoch s), t (s since the watch started), event, ..."""
        return pd.DataFrame(list(self._rows), columns=self.EVENT_COLUMNS)

    def stop(self) -> pd.DataFrame:
        self._cancel()
        self._thread.join(timeout=2)
        return self.events()

    def __enter__(self) -> RegistryWatch:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
