"""Questions answered from logs alone: who errs, what is slow, who sends too much.

Every function takes the frame from `lab.logs(...)`. The gateway's records
(service "traefik") are its access log: one per request that reached it, with
the client's address, the server chosen, the status and the duration. The
services' records are their failures (status or gRPC code, duration): a successful request
writes no record (its span says it all), so what each instance served comes from the gateway.
"""

from __future__ import annotations

import pandas as pd

from .errors import LabError

GATEWAY = "traefik"
ACCESS_COLUMNS = ["time", "client", "method", "host", "path", "status", "duration_ms",
                  "server", "router", "retries", "request_id", "trace_id"]  # fmt: skip
# Traefik's access-log field -> our column (Duration is in nanoseconds)
_ACCESS_FIELDS = {
    "ClientHost": "client", "RequestMethod": "method", "RequestHost": "host",
    "RequestPath": "path", "DownstreamStatus": "status", "Duration": "duration_ms",
    "ServiceAddr": "server", "RouterName": "router", "RetryAttempts": "retries",
}


def access_log(logs: pd.DataFrame) -> pd.DataFrame:
    """The gateway's access log as one row per request, with typed columns."""
    records = logs[logs["service"] == GATEWAY]
    fields = pd.DataFrame(
        [{ours: attrs.get(theirs) for theirs, ours in _ACCESS_FIELDS.items()}
         for attrs in records["attributes"]],
        columns=list(_ACCESS_FIELDS.values()),
    )
    frame = pd.concat(
        [records[["time", "request_id", "trace_id"]].reset_index(drop=True), fields], axis=1
    )
    for column in ("status", "retries"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").fillna(0).astype(int)
    frame["duration_ms"] = pd.to_numeric(frame["duration_ms"], errors="coerce") / 1e6
    return frame[ACCESS_COLUMNS]


def error_rate_by_instance(logs: pd.DataFrame, instances: pd.DataFrame) -> pd.DataFrame:
    """Requests, errors and error ratio per instance of `instances`. Requests from the gateway's
    access log (the server that answered each, named through `instances`, the frame of
    lab.instances()); errors from the services' own records of failures (HTTP status >= 500,
    a gRPC code other than OK): they log failures only, a success is in its trace."""
    columns = ["service", "instance", "requests", "errors", "error_ratio"]
    named = instances.set_index("address")[["service", "instance"]]
    answered = access_log(logs)["server"].map(named["instance"]).dropna()
    services = logs[logs["service"] != GATEWAY]
    failed = [instance for instance, attributes
              in zip(services["instance"], services["attributes"], strict=True)
              if _failed(attributes)]
    frame = pd.DataFrame({"requests": answered.value_counts(),
                          "errors": pd.Series(failed, dtype=str).value_counts()})
    frame = frame.fillna(0).astype(int).rename_axis("instance").reset_index()
    frame = frame[frame["instance"].isin(named["instance"])]  # the instances asked about
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame["service"] = frame["instance"].map(dict(zip(named["instance"], named["service"],
                                                      strict=True)))
    frame["error_ratio"] = frame["errors"] / frame["requests"]
    return frame[columns].sort_values("error_ratio", ascending=False, ignore_index=True)


def _failed(attributes: dict) -> bool | None:
    """Whether a request record is a failure; None for records that are not about a request."""
    if "status" in attributes:
        return int(attributes["status"]) >= 500
    if "grpc_code" in attributes:
        return attributes["grpc_code"] != "OK"
    return None


def slowest_endpoints(access: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The `n` (host, path) pairs with the highest p95 latency at the gateway."""
    grouped = access.groupby(["host", "path"])["duration_ms"]
    frame = pd.DataFrame({
        "requests": grouped.size(),
        "p50_ms": grouped.quantile(0.5),
        "p95_ms": grouped.quantile(0.95),
        "max_ms": grouped.max(),
    })
    return frame.sort_values("p95_ms", ascending=False).head(n).reset_index()


def top_clients(access: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The `n` client addresses sending the most requests: count, share, rate and errors."""
    if access.empty:
        return pd.DataFrame(columns=["client", "requests", "share", "rps", "errors"])
    span_s = max((access["time"].max() - access["time"].min()).total_seconds(), 1.0)
    grouped = access.groupby("client")
    frame = pd.DataFrame({
        "requests": grouped.size(),
        "errors": grouped["status"].apply(lambda s: int((s >= 500).sum())),
    })
    frame["share"] = frame["requests"] / len(access)
    frame["rps"] = frame["requests"] / span_s
    frame = frame[["requests", "share", "rps", "errors"]]
    return frame.sort_values("requests", ascending=False).head(n).reset_index()


def abusive_clients(access: pd.DataFrame, factor: float = 5.0,
                    min_requests: int = 50) -> pd.DataFrame:
    """Clients sending more than `factor` times the median client's requests (and at least
    `min_requests`): the flood stands out against what a typical client sends."""
    if factor <= 1:
        raise LabError(f"factor must be above 1 (a multiple of the median client), got {factor}")
    clients = top_clients(access, n=len(access))
    if clients.empty:
        return clients
    typical = clients["requests"].median()
    flagged = clients[(clients["requests"] > factor * typical)
                      & (clients["requests"] >= min_requests)]
    return flagged.assign(times_median=flagged["requests"] / typical).reset_index(drop=True)
