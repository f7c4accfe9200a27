"""PromQL against the lab's Prometheus, answered as tidy DataFrames.

One row per (series, timestamp): a `time` column (UTC), a `value` column and
one column per label. A malformed query raises LabError carrying Prometheus's
own message, never a traceback from the HTTP layer.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone

import httpx
import pandas as pd

from . import durations
from .errors import LabError, check_text
from .topology import infra

MAX_QUERY_CHARS = 10_000  # a query travels in the URL, which httpx caps at 64 KB
MAX_POINTS = 11_000  # Prometheus refuses range queries with more points per series
_WHEN = "unix seconds, a datetime, or a duration ago such as '30s', '5m' or '1h30m'"


def timestamp(value: float | str | datetime | pd.Timestamp | None, now: float,
              what: str = "time") -> float:
    """Unix seconds from a unix time, a datetime, or a duration ago ("5m": five minutes ago).

    A bare number here is a point in time (unix seconds), not a duration.
    """
    if value is None:
        return now
    if isinstance(value, datetime):  # pd.Timestamp is a datetime too; naive means UTC
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    if isinstance(value, str):
        try:
            return now - durations.seconds(value, what)
        except LabError:
            raise LabError(f"{what} must be {_WHEN}; got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LabError(f"{what} must be {_WHEN}; got {value!r}")
    return float(value)


class Prometheus:
    def __init__(self, url: str | None = None, timeout: float = 10.0):
        url = url or infra().prometheus.url  # default: this process's lab
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=timeout)

    def close(self) -> None:
        """Close the connection to the server."""
        self.http.close()

    def query(self, promql: str, start: float | str | datetime | None = None,
              end: float | str | datetime | None = None,
              step: float | str | None = None) -> pd.DataFrame:
        """An instant query (no `start`) or a range query from `start` to `end` (now).

        start/end: unix seconds, a datetime, or a duration ago ("5m"); step: a duration
        (labkit.durations: 2 or "2s"; a bare number is seconds).
        """
        if not isinstance(promql, str) or not promql.strip():
            raise LabError("a PromQL expression is required, e.g. 'up' or "
                           "'sum by (code) (rate(traefik_service_requests_total[30s]))'")
        check_text(promql, "a PromQL expression", MAX_QUERY_CHARS)
        now = time.time()
        if start is None:
            if step is not None:
                raise LabError("step= needs start= (a range query)")
            data = self._get("/api/v1/query", {"query": promql, "time": timestamp(end, now, "end")})
        else:
            start_s, end_s = timestamp(start, now, "start"), timestamp(end, now, "end")
            if start_s >= end_s:
                raise LabError(f"start must be before end (start={start!r}, end={end!r})")
            step_s = (durations.seconds(step, "step", positive=True) if step is not None
                      else max(1.0, (end_s - start_s) / 250))
            if (end_s - start_s) / step_s > MAX_POINTS:
                raise LabError(f"{(end_s - start_s) / step_s:.0f} points per series is too "
                               f"many (at most {MAX_POINTS}); use a larger step")
            data = self._get("/api/v1/query_range",
                             {"query": promql, "start": start_s, "end": end_s, "step": step_s})
        return tidy(data)

    def _get(self, path: str, params: dict) -> dict:
        try:
            response = self.http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise LabError(f"Prometheus at {self.url} is not reachable ({exc}); "
                           "'labkit up' starts it") from None
        try:
            body = response.json()
        except ValueError:
            raise LabError(f"Prometheus answered HTTP {response.status_code}: "
                           f"{response.text[:200]}") from None
        if body.get("status") != "success":
            raise LabError(f"Prometheus rejected the query: {body.get('error', body)}")
        return body["data"]


def tidy(data: dict) -> pd.DataFrame:
    """Prometheus's vector/matrix/scalar result as one row per (series, timestamp)."""
    kind, result = data["resultType"], data["result"]
    if kind in ("scalar", "string"):
        result = [{"metric": {}, "value": result}]
    rows = []
    for series in result:
        points = series.get("values") or [series["value"]]
        for ts, value in points:
            rows.append({"time": ts, "value": float(value), **series["metric"]})
    labels = sorted({k for series in result for k in series["metric"]})
    frame = pd.DataFrame(rows, columns=["time", "value", *labels])
    frame["time"] = pd.to_datetime(frame["time"].astype(float), unit="s", utc=True)
    frame["value"] = frame["value"].astype(float)
    return frame
