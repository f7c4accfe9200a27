"""labkit.durations: one grammar, and a bare number means seconds wherever it is passed."""

import pytest

from labkit import durations
from labkit.errors import LabError
from labkit.faults import behaviour_body


@pytest.mark.parametrize("value, expected", [
    (2, 2.0), (0.25, 0.25), ("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0),
    ("1m30s", 90.0), ("1.5s", 1.5), ("250us", 0.00025),
])
def test_durations(value, expected):
    assert durations.seconds(value) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["soon", "5 minutes", "200", "-1s", True, None, [1]])
def test_bad_durations_say_what_is_valid(bad):
    with pytest.raises(LabError, match="latency must be a number of seconds or a string such as"):
        durations.seconds(bad, "latency")


def test_limits_name_what_is_valid():
    with pytest.raises(LabError, match="latency must be a finite, non-negative duration"):
        durations.seconds(-1, "latency")
    with pytest.raises(LabError, match="step must be greater than zero"):
        durations.seconds("0s", "step", positive=True)
    with pytest.raises(LabError, match="timeout must be at most 60s, got '2m'"):
        durations.seconds("2m", "timeout", maximum=60)


def test_milliseconds_and_go_strings():
    assert durations.milliseconds(0.2) == pytest.approx(200.0)
    assert durations.milliseconds("200ms") == pytest.approx(200.0)
    assert [durations.go(v) for v in (0.25, 2, 90)] == ["250ms", "2s", "90s"]


@pytest.mark.parametrize("latency", [0.2, "200ms", "0.2s"])
def test_fault_latency_is_seconds_or_a_duration_string(latency):
    body = behaviour_body(latency=latency, jitter=0.05)
    assert body["latency"] == {"ms": pytest.approx(200.0), "jitter_ms": pytest.approx(50.0),
                               "distribution": "fixed"}
