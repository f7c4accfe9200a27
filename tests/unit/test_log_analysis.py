"""labkit.log_analysis on hand-made log frames shaped like lab.logs() returns."""

import pandas as pd
import pytest

from labkit import log_analysis
from labkit.errors import LabError


def access_record(second: float, client: str, status: int = 200, duration_ms: float = 2.0,
                  path: str = "/"):
    return {
        "time": pd.Timestamp(1_800_000_000 + second, unit="s", tz="UTC"),
        "service": "traefik", "instance": "", "level": "info", "body": "{}",
        "request_id": "r", "trace_id": "t", "span_id": "s",
        "attributes": {"ClientHost": client, "RequestMethod": "GET",
                       "RequestHost": "echo.localhost", "RequestPath": path,
                       "DownstreamStatus": status, "Duration": int(duration_ms * 1e6),
                       "ServiceAddr": "127.0.1.1:8080", "RouterName": "echo@etcd",
                       "RetryAttempts": 0},
    }


def service_record(instance: str, **attributes):
    return {"time": pd.Timestamp(1_800_000_000, unit="s", tz="UTC"),
            "service": instance.rsplit("-", 1)[0], "instance": instance, "level": "info",
            "body": "", "request_id": "r", "trace_id": "t", "span_id": "s",
            "attributes": attributes}


@pytest.fixture
def access() -> pd.DataFrame:
    records = [access_record(i / 10, "127.0.0.66") for i in range(100)]
    for client in ("127.0.0.21", "127.0.0.22", "127.0.0.23"):
        records += [access_record(i, client, duration_ms=50, path="/slow") for i in range(10)]
    records.append(access_record(9.9, "127.0.0.21", status=502))
    return log_analysis.access_log(pd.DataFrame(records))


def test_access_log_columns_are_typed(access):
    assert list(access.columns) == log_analysis.ACCESS_COLUMNS
    assert access["status"].dtype.kind == "i"
    assert access["duration_ms"].iat[0] == pytest.approx(2.0)


def test_the_flooding_client_is_the_only_one_flagged(access):
    top = log_analysis.top_clients(access)
    assert top["client"].iat[0] == "127.0.0.66"
    assert top.set_index("client").at["127.0.0.21", "errors"] == 1
    flagged = log_analysis.abusive_clients(access)
    assert flagged["client"].tolist() == ["127.0.0.66"]
    with pytest.raises(LabError, match="factor must be above 1"):
        log_analysis.abusive_clients(access, factor=1)


def test_slowest_endpoints_rank_by_p95(access):
    slowest = log_analysis.slowest_endpoints(access)
    assert slowest["path"].iat[0] == "/slow"
    assert slowest["p95_ms"].iat[0] == pytest.approx(50.0)


def test_error_rate_by_instance_counts_requests_at_the_gateway_and_errors_in_failure_records():
    instances = pd.DataFrame({"service": ["echo", "echo", "routeguide"],
                              "instance": ["echo-1", "echo-2", "routeguide-1"],
                              "address": ["127.0.1.1:8080", "127.0.1.2:8080", "127.0.1.9:50051"]})
    served = [("127.0.1.1:8080", 4), ("127.0.1.2:8080", 1), ("127.0.1.9:50051", 2),
              ("127.0.9.9:8080", 3)]  # an address no longer registered: not counted
    access = [{**record, "attributes": {**record["attributes"], "ServiceAddr": address}}
              for address, count in served for record in [access_record(0, "c")] * count]
    logs = pd.DataFrame([
        *access,
        service_record("echo-1", status=500), service_record("echo-1", status=503),
        service_record("echo-2"),  # not a request record
        service_record("routeguide-1", grpc_code="UNAVAILABLE"),
    ])
    frame = log_analysis.error_rate_by_instance(logs, instances).set_index("instance")
    assert frame.at["echo-1", "error_ratio"] == 0.5
    assert (frame.at["echo-2", "requests"], frame.at["echo-2", "errors"]) == (1, 0)
    assert frame.at["routeguide-1", "errors"] == 1
    assert frame.at["routeguide-1", "service"] == "routeguide"
    assert frame.index[0] in ("echo-1", "routeguide-1") and frame.index[-1] == "echo-2"
    assert frame["requests"].sum() == 7
    assert log_analysis.error_rate_by_instance(logs.iloc[:0], instances).empty
