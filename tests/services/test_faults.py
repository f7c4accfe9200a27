"""Fault injection without processes: validation, the loopback check, sampling, slow start."""

from __future__ import annotations

import json
import logging
import random
import statistics

import pytest
from labstack.admin import is_loopback
from labstack.faults import (
    FaultError,
    FaultState,
    Latency,
    parse_faults_file,
    parse_update,
)
from labstack.runtime import read_slow_start
from prometheus_client import REGISTRY

pytestmark = pytest.mark.timeout(10)

BAD_BODIES = [
    (b"", "not valid JSON"),
    (b"{", "not valid JSON"),
    (b"\xff", "not valid JSON"),
    (b"[1]", "must be a JSON object with any of latency, error_rate, unready, leak_mb_per_s, "
               "cpu_burn, got an array"),
    (b"null", "must be a JSON object"),
    (b'{"latncy": {"ms": 1}}', "unknown field 'latncy' in the body; valid fields: latency, "),
    (b'{"error_rate": "0.5"}', 'error_rate must be a number in 0..1, got "0.5"'),
    (b'{"error_rate": 1.5}', "error_rate must be a number in 0..1"),
    (b'{"error_rate": -0.1}', "error_rate must be a number in 0..1"),
    (b'{"error_rate": true}', "error_rate must be a number in 0..1"),
    (b'{"error_rate": NaN}', "error_rate must be a number in 0..1"),
    (b'{"leak_mb_per_s": 101}', "leak_mb_per_s must be a number in 0..100, got 101"),
    (b'{"leak_mb_per_s": -1}', "leak_mb_per_s must be a number in 0..100"),
    (b'{"leak_mb_per_s": "10MB"}', "leak_mb_per_s must be a number"),
    (b'{"cpu_burn": 1.5}', "cpu_burn must be a number in 0..1, got 1.5"),
    (b'{"cpu_burn": true}', "cpu_burn must be a number in 0..1"),
    (b'{"unready": "yes"}', "unready must be true or false"),
    (b'{"unready": 1}', "unready must be true or false"),
    (b'{"latency": 200}', "latency must be an object like"),
    (b'{"latency": {}}', "latency needs ms"),
    (b'{"latency": {"ms": -1}}', "latency.ms must be a number in 0..60000, got -1"),
    (b'{"latency": {"ms": "200ms"}}', "latency.ms must be a number"),
    (b'{"latency": {"ms": 1e9}}', "latency.ms must be a number in 0..60000"),
    (b'{"latency": {"ms": 9, "jitter_ms": -5}}', "latency.jitter_ms must be a number"),
    (b'{"latency": {"ms": 9, "distribution": "normal"}}', "one of fixed, uniform, exponential"),
    (b'{"latency": {"ms": 9, "spread": 5}}', "unknown latency field 'spread'; valid: ms, "),
    # One good change beside a bad one: nothing may be applied.
    (b'{"error_rate": 0.5, "unready": "no"}', "unready must be true or false"),
    (b'{"latency": {"ms": 50}, "bogus": 1}', "unknown field 'bogus'"),
]


@pytest.mark.parametrize(("body", "message"), BAD_BODIES)
def test_bad_bodies_are_rejected_with_the_valid_choices_and_change_nothing(
    body: bytes, message: str
) -> None:
    state = FaultState()
    state.update(parse_update(b'{"error_rate": 0.25, "latency": {"ms": 10}}'))
    before = state.describe()
    with pytest.raises(FaultError) as error:
        state.update(parse_update(body))
    assert message in str(error.value)
    assert state.describe() == before


def test_updates_are_partial_and_clear_resets_everything() -> None:
    changes: list[bool] = []
    state = FaultState(on_change=lambda: changes.append(state.ready()))
    body = {"latency": {"ms": 200, "jitter_ms": 50, "distribution": "uniform"}, "unready": True}
    old, new = state.update(parse_update(json.dumps(body)))
    assert old == {
        "latency": None,
        "error_rate": 0.0,
        "unready": False,
        "leak_mb_per_s": 0.0,
        "cpu_burn": 0.0,
        "slow_start_remaining_s": 0.0,
    }
    latency = {"ms": 200.0, "jitter_ms": 50.0, "distribution": "uniform"}
    assert new == {**old, "unready": True, "latency": latency}
    _, new = state.update(parse_update(b'{"error_rate": 1}'))
    assert new["error_rate"] == 1.0 and new["unready"] and new["latency"]["ms"] == 200
    _, new = state.update(parse_update(b'{"latency": null}'))
    assert new["latency"] is None and new["error_rate"] == 1.0
    state.start_slow_start(30)
    _, new = state.clear()
    assert new == old
    assert changes == [False, False, False, True], "every change is announced, after it applies"


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.0.9.17", True),
        ("127.255.255.254", True),
        ("::ffff:127.0.0.66", True),
        ("10.0.0.1", False),
        ("128.0.0.1", False),
        ("192.168.1.10", False),
        ("::1", False),  # loopback, but not the 127.0.0.0/8 the API promises
        ("::ffff:10.0.0.1", False),
        ("localhost", False),
        ("", False),
    ],
)
def test_only_127_8_callers_are_admitted(address: str, allowed: bool) -> None:
    assert is_loopback(address) is allowed


def samples(latency: Latency, n: int = 20_000) -> list[float]:
    rng = random.Random(7)
    return [latency.sample_s(rng) for _ in range(n)]


def test_fixed_latency_ignores_jitter() -> None:
    assert set(samples(Latency(200, jitter_ms=50), n=100)) == {0.2}


def test_uniform_latency_stays_within_jitter_and_centres_on_ms() -> None:
    delays = samples(Latency(100, jitter_ms=50, distribution="uniform"))
    assert 0.05 <= min(delays) < 0.052 and 0.148 < max(delays) <= 0.15
    assert statistics.fmean(delays) == pytest.approx(0.1, abs=0.002)


def test_uniform_latency_is_clipped_at_zero() -> None:
    delays = samples(Latency(10, jitter_ms=50, distribution="uniform"))
    assert min(delays) == 0.0 and max(delays) <= 0.06
    assert sum(d == 0 for d in delays) / len(delays) == pytest.approx(0.4, abs=0.02)


def test_exponential_latency_has_mean_ms() -> None:
    delays = samples(Latency(100, distribution="exponential"))
    assert min(delays) >= 0
    assert statistics.fmean(delays) == pytest.approx(0.1, rel=0.05)
    assert statistics.median(delays) == pytest.approx(0.1 * 0.693, rel=0.05)  # mean * ln 2
    assert samples(Latency(0, distribution="exponential"), n=10) == [0.0] * 10


def injected(kind: str) -> float:
    return REGISTRY.get_sample_value("lab_injected_faults_total", {"kind": kind}) or 0.0


@pytest.mark.parametrize(("rate", "low", "high"), [(0, 0, 0), (0.3, 0.28, 0.32), (1, 1, 1)])
def test_errors_are_drawn_at_the_configured_rate_and_counted(
    rate: float, low: float, high: float
) -> None:
    state = FaultState(rng=random.Random(3))
    state.update(parse_update(json.dumps({"error_rate": rate, "latency": {"ms": 5}})))
    errors_before, latency_before = injected("error"), injected("latency")
    plans = [state.plan() for _ in range(20_000)]
    failed = sum(plan.fail for plan in plans)
    assert low <= failed / len(plans) <= high
    assert {plan.delay_s for plan in plans} == {0.005}
    assert injected("error") - errors_before == failed
    assert injected("latency") - latency_before == len(plans)


def test_no_faults_means_no_delay_and_no_count() -> None:
    before = injected("latency") + injected("error")
    assert FaultState().plan() == (0.0, False)
    assert injected("latency") + injected("error") == before


def test_slow_start_keeps_the_instance_unready_until_it_ends() -> None:
    now = [100.0]
    state = FaultState(clock=lambda: now[0])
    state.start_slow_start(2)
    assert not state.ready() and state.describe()["slow_start_remaining_s"] == 2.0
    now[0] += 1.5
    assert state.slow_start_remaining() == pytest.approx(0.5)
    now[0] += 0.6
    assert state.ready(), "ready by the clock even before end_slow_start runs"
    assert state.end_slow_start() and not state.end_slow_start()
    state.start_slow_start(5)
    state.clear()
    assert state.ready() and not state.end_slow_start(), "DELETE ends a slow start"


@pytest.mark.parametrize(
    ("text", "seconds"), [('{"slow_start_s": 1.5}', 1.5), ("{}", 0.0), ('{"slow_start_s": 0}', 0)]
)
def test_faults_file(text: str, seconds: float) -> None:
    assert parse_faults_file(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not valid JSON"),
        ("slow_start_s=2", "not valid JSON"),
        ("[2]", "must be a JSON object"),
        ('{"slow_start": 2}', "unknown field 'slow_start' in the faults file; valid fields: slow"),
        ('{"slow_start_s": -1}', "slow_start_s must be a number in 0..600"),
        ('{"slow_start_s": "2"}', "slow_start_s must be a number"),
    ],
)
def test_bad_faults_file(text: str, message: str) -> None:
    with pytest.raises(FaultError, match=message):
        parse_faults_file(text)


def test_read_slow_start_never_fails(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "echo-1.json"
    assert read_slow_start(None) == 0 and read_slow_start(str(path)) == 0
    path.write_text('{"slow_start_s": 2.5}')
    assert read_slow_start(str(path)) == 2.5
    path.write_text('{"slow_start_s": "soon"}')
    with caplog.at_level(logging.ERROR):
        assert read_slow_start(str(path)) == 0
    (record,) = caplog.records
    assert record.getMessage() == "ignoring the faults file" and record.file == str(path)
    assert read_slow_start(str(tmp_path)) == 0, "a directory is no faults file either"
