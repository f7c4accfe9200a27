"""labkit.metrics: Prometheus answers as tidy frames; bad input refused before any request."""

import pandas as pd
import pytest

from labkit.errors import LabError
from labkit.metrics import Prometheus, tidy, timestamp


def test_a_matrix_becomes_one_row_per_series_and_timestamp():
    data = {"resultType": "matrix", "result": [
        {"metric": {"service": "echo"}, "values": [[100, "1.5"], [102, "2"]]},
        {"metric": {"service": "web", "version": "v1"}, "values": [[100, "NaN"]]},
    ]}
    frame = tidy(data)
    assert list(frame.columns) == ["time", "value", "service", "version"]
    assert len(frame) == 3
    assert frame["time"].iat[0] == pd.Timestamp(100, unit="s", tz="UTC")
    assert frame["value"].iat[1] == 2.0 and pd.isna(frame["value"].iat[2])


def test_a_vector_and_a_scalar_are_tidy_too():
    vector = tidy({"resultType": "vector",
                   "result": [{"metric": {"code": "200"}, "value": [5, "3"]}]})
    assert vector[["value", "code"]].values.tolist() == [[3.0, "200"]]
    scalar = tidy({"resultType": "scalar", "result": [5, "7"]})
    assert scalar["value"].tolist() == [7.0]
    empty = tidy({"resultType": "vector", "result": []})
    assert list(empty.columns) == ["time", "value"] and empty.empty


def test_times_are_absolute_or_relative_to_now():
    assert timestamp("5m", now=1000.0) == 700.0
    assert timestamp(None, now=1000.0) == 1000.0
    assert timestamp(pd.Timestamp(50, unit="s", tz="UTC"), now=1000.0) == 50.0
    assert timestamp(50, now=1000.0) == 50.0, "a bare number is a point in time here"


@pytest.mark.parametrize("bad", ["soon", "5 minutes", "-1s", True])
def test_bad_times_say_what_is_valid(bad):
    with pytest.raises(LabError, match="start must be unix seconds, a datetime, or a duration ago"):
        timestamp(bad, now=1000.0, what="start")


@pytest.mark.parametrize("kwargs, message", [
    ({"promql": " "}, "PromQL expression is required"),
    ({"promql": "up", "step": "2s"}, "step= needs start="),
    ({"promql": "up", "start": 100, "end": 50}, "start must be before end"),
    ({"promql": "up", "start": "1h", "step": "100ms"}, "too many"),
    ({"promql": "up", "start": "1h", "step": 0}, "step must be greater than zero"),
    ({"promql": "up", "start": "1h", "step": "2 seconds"}, "step must be a number of seconds"),
])
def test_bad_queries_are_refused_before_asking_prometheus(kwargs, message):
    nowhere = Prometheus("http://127.0.0.1:9")  # nothing listens: a request would fail
    with pytest.raises(LabError, match=message):
        nowhere.query(**kwargs)


def test_an_unreachable_prometheus_is_named():
    with pytest.raises(LabError, match="not reachable.*labkit up"):
        Prometheus("http://127.0.0.1:9", timeout=0.5).query("up")
