"""The service registry as learners see it: etcd records kept alive by leases.

Each instance registers itself (see stack/labstack/runtime.py) under
`registry/<service>/<instance>/<pid>` with a lease it refreshes while healthy.
A crashed process stops refreshing, so its record vanishes when the lease
expires; a graceful stop revokes the lease and the record vanishes at once.
"""

from __future__ import annotations

import json
import time

import etcd3gw
import pandas as pd

from .kv import etcd_client

PREFIX = "registry/"
COLUMNS = ["service", "instance", "slot", "version", "address", "pid", "age_s", "lease_ttl_s"]


class Registry:
    def __init__(self, client: etcd3gw.Etcd3Client | None = None):
        self.etcd = client or etcd_client()

    def records(self, service: str | None = None) -> list[dict]:
        """Raw registry records (dicts as the instances wrote them), plus their lease id."""
        prefix = PREFIX + (f"{service}/" if service else "")
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

    def _ttl(self, lease_id: int) -> int | None:
        if not lease_id:
            return None
        ttl = etcd3gw.Lease(lease_id, self.etcd).ttl()
        return ttl if ttl >= 0 else None  # -1: the lease expired between the two calls
