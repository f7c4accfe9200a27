"""Traces and logs from the lab's telemetry store, as DataFrames.

    tel = Telemetry()
    tel.traces(service="web", since="5m", min_duration="200ms", status="error")
    tel.trace(trace_id)            # one row per span, with depth and offset for a waterfall
    tel.spans("echo", since=t0, kind="SERVER")  # each request echo's instances served
    tel.logs(request_id="...")     # every service's records for one request, in time order
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any, TypeAlias

import httpx
import pandas as pd

from . import durations
from .errors import LabError, check_text
from .metrics import timestamp
from .topology import infra

STATUSES = ("ok", "error")
MAX_FILTER_CHARS = 1000  # a filter travels in the query string, which httpx caps at 64 KB
LEVELS = ("debug", "info", "warning", "error", "critical")
TRACE_COLUMNS = ["trace_id", "start", "duration_ms", "root_service", "root_name",
                 "span_count", "services", "error"]  # fmt: skip
SPAN_COLUMNS = ["trace_id", "span_id", "parent_span_id", "service", "instance", "name", "kind",
                "start", "duration_ms", "offset_ms", "status", "status_message", "attributes",
                "depth"]  # fmt: skip
LOG_COLUMNS = ["time", "service", "instance", "level", "body", "request_id", "trace_id",
               "span_id", "attributes"]  # fmt: skip
_TRACE_ID = re.compile(r"[0-9a-fA-F]{32}")

When: TypeAlias = float | str | datetime | pd.Timestamp | None


class Telemetry:
    """A client of the telemetry store's query API (`python -m labstack.telemetry`)."""

    def __init__(self, url: str | None = None, timeout: float = 5.0) -> None:
        url = url or infra().telemetry.url  # default: this process's lab
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        """Close the connection to the server."""
        self.http.close()

    def traces(
        self,
        service: str | None = None,
        since: When = None,
        until: When = None,
        min_duration: float | str | None = None,
        status: str | None = None,
        limit: int = 20,
    ) -> pd.DataFrame:
        """Trace summaries, newest first.

        since/until: unix seconds, a datetime (naive means UTC), or "30s"/"5m"/"1h" ago.
        min_duration: a duration (labkit.durations): 0.2 or "200ms"; a bare number is
        seconds. status: "ok" or "error".
        """
        params = {
            "service": _text("service", service),
            "since": _when(since, "since"),
            "until": _when(until, "until"),
            "min_duration_ms": (None if min_duration is None
                                else durations.milliseconds(min_duration, "min_duration")),
            "status": _choice("status", status, STATUSES),
            "limit": _limit(limit),
        }
        found = self._get("/api/traces", params)
        df = pd.DataFrame(found, columns=TRACE_COLUMNS)
        df["start"] = pd.to_datetime(df["start"], unit="s", utc=True)
        return df

    def trace(self, trace_id: str) -> pd.DataFrame:
        """One row per span ordered by start; `depth` counts parent links up to the root."""
        if not isinstance(trace_id, str) or not _TRACE_ID.fullmatch(trace_id):
            raise LabError(f"a trace id is 32 hex characters, not {trace_id!r}")
        response = self._request("/api/traces/" + trace_id.lower(), {})
        if response.status_code == 404:
            raise LabError(f"no trace {trace_id} in the telemetry store (it may not have been "
                           "exported yet, or was pruned by retention)")  # fmt: skip
        spans = self._json(response)["spans"]
        df = pd.DataFrame(spans)
        first = df["start_ns"].min()
        df["offset_ms"] = (df["start_ns"] - first) / 1e6
        df["start"] = pd.to_datetime(df["start_ns"], unit="ns", utc=True)
        df["depth"] = _depths(df["span_id"].tolist(), df["parent_span_id"].tolist())
        return df[SPAN_COLUMNS]

    def spans(self, service: str, since: When = None, until: When = None,
              kind: str | None = None, limit: int = 1000) -> pd.DataFrame:
        """The spans `service` recorded in the traces started between `since` and `until`
        (at most `limit` traces, the newest), one row each; `kind` "SERVER": each request
        its instances served, with its duration. One call per trace: for a few thousand."""
        listed = self.traces(service=service, since=since, until=until, limit=limit)
        if listed.empty:
            return pd.DataFrame(columns=SPAN_COLUMNS)
        spans = pd.concat([self.trace(t) for t in listed["trace_id"]], ignore_index=True)
        chosen = spans["service"] == service
        if kind is not None:
            chosen &= spans["kind"] == kind.upper()
        return spans[chosen].reset_index(drop=True)

    def logs(
        self,
        request_id: str | None = None,
        trace_id: str | None = None,
        service: str | None = None,
        instance: str | None = None,
        level: str | None = None,
        since: When = None,
        until: When = None,
        contains: str | None = None,
        limit: int = 1000,
    ) -> pd.DataFrame:
        """Log records in time order (the newest `limit` that match).

        level: that level or more severe (debug < info < warning < error < critical).
        contains: a case-insensitive substring of the body.
        """
        params = {
            "request_id": _text("request_id", request_id),
            "trace_id": _text("trace_id", trace_id),
            "service": _text("service", service),
            "instance": _text("instance", instance),
            "level": _choice("level", level, LEVELS),
            "since": _when(since, "since"),
            "until": _when(until, "until"),
            "contains": _text("contains", contains),
            "limit": _limit(limit, 100_000),
        }
        found = self._get("/api/logs", params)
        df = pd.DataFrame(found, columns=[*LOG_COLUMNS, "time_ns"])
        df["time"] = pd.to_datetime(df["time_ns"], unit="ns", utc=True)
        return df[LOG_COLUMNS]

    def services(self) -> list[str]:
        """Every service that has sent spans or logs."""
        return self._get("/api/services", {})

    def stats(self) -> dict[str, Any]:
        """What the store holds and has accepted, rejected and pruned."""
        return self._get("/api/stats", {})

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        return self._json(self._request(path, params))

    def _request(self, path: str, params: dict[str, Any]) -> httpx.Response:
        params = {key: value for key, value in params.items() if value is not None}
        try:
            return self.http.get(path, params=params)
        except httpx.TransportError as exc:
            raise LabError(f"the telemetry store at {self.url} is not reachable ({exc}); "
                           "`labkit up` starts it") from None  # fmt: skip

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code == 400:
            raise LabError(f"the telemetry store refused the query: {_message(response)}")
        if response.status_code != 200:
            raise LabError(f"the telemetry store at {self.url} answered "
                           f"{response.status_code}: {_message(response)}")  # fmt: skip
        return response.json()


def _message(response: httpx.Response) -> str:
    try:
        return response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def _when(value: When, what: str) -> float | None:
    return None if value is None else timestamp(value, time.time(), what)


def _text(name: str, value: str | None) -> str | None:
    return None if value is None else check_text(value, name, MAX_FILTER_CHARS)


def _choice(name: str, value: str | None, valid: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in valid:
        raise LabError(f"{name} must be one of {', '.join(valid)}; not {value!r}")
    return value.lower()


def _limit(value: int, most: int = 1000) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise LabError(f"limit must be a whole number from 1 to {most}, not {value!r}")
    return value


def _depths(span_ids: list[str], parents: list[str]) -> list[int]:
    """Parent links followed to a span with no known parent (depth 0); cycles stop too."""
    parent_of = dict(zip(span_ids, parents, strict=True))
    depths = []
    for span_id in span_ids:
        depth, seen = 0, {span_id}
        parent = parent_of[span_id]
        while parent in parent_of and parent not in seen:
            seen.add(parent)
            depth += 1
            parent = parent_of[parent]
        depths.append(depth)
    return depths
