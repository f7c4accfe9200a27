import math

import pytest

from labkit import durations
from labkit.errors import LabError
from labkit.faults import behaviour_body


@pytest.mark.parametrize(("value", "expected"), [
    ("250ms", 0.25), ("1.5s", 1.5), ("1m30s", 90.0), ("2h", 7200.0), ("500us", 5e-4),
    ("500µs", 5e-4), ("100ns", 1e-7), (" 2s ", 2.0), ("1m0s", 60.0),
])  # fmt: skip
def test_go_duration_strings(value: str, expected: float) -> None:
    assert math.isclose(durations.seconds(value), expected)


@pytest.mark.parametrize("value", [0.25, 2, 0, 90.5])
def test_a_bare_number_means_seconds(value: float) -> None:
    assert durations.seconds(value) == value
    assert durations.milliseconds(value) == value * 1000


@pytest.mark.parametrize("value", [
    True, False, float("nan"), float("inf"), -float("inf"), -1, -0.5, "100", "2 seconds",
    "1.s", "ms", "", "-1s", None, [1],
])  # fmt: skip
def test_refused_values_name_what_is_valid(value: object) -> None:
    with pytest.raises(LabError, match="interval must be"):
        durations.seconds(value, "interval")


def test_positive_refuses_zero_and_maximum_caps() -> None:
    with pytest.raises(LabError, match="period must be greater than zero"):
        durations.seconds("0s", "period", positive=True)
    with pytest.raises(LabError, match="window must be at most 1s"):
        durations.seconds(1.5, "window", maximum=1)
    assert durations.seconds("1s", maximum=1) == 1


@pytest.mark.parametrize(("seconds", "text"), [
    (0.25, "250ms"), (2, "2s"), (90, "90s"), (0.001, "1ms"), (1.5, "1500ms"), (0.0005, "500us"),
])  # fmt: skip
def test_go_renders_the_shortest_string(seconds: float, text: str) -> None:
    assert durations.go(seconds) == text


@pytest.mark.parametrize("seconds", [0.25, 2, 90, 0.001, 1.5, 0.0005, 3600, 0.1234567])
def test_go_round_trips(seconds: float) -> None:
    assert math.isclose(durations.seconds(durations.go(seconds)), seconds, abs_tol=1e-6)


def test_milliseconds() -> None:
    assert durations.milliseconds(0.2) == pytest.approx(200.0)
    assert durations.milliseconds("200ms") == pytest.approx(200.0)


@pytest.mark.parametrize("latency", [0.2, "200ms", "0.2s"])
def test_fault_latency_is_seconds_or_a_duration_string(latency: object) -> None:
    body = behaviour_body(latency=latency, jitter=0.05)
    assert body["latency"] == {"ms": pytest.approx(200.0), "jitter_ms": pytest.approx(50.0),
                               "distribution": "fixed"}
