"""Issue #11: the p95 that labkit and the canary analysis read from Prometheus is the p95 the
instances measured. Prometheus interpolates inside a histogram bucket, so this holds only where
the services' buckets are narrow: with bounds at 0.25 and 0.5 s only, a real 300 ms read 488 ms.

The truth is each request's own duration, from the instance's server span (measured around the
same handler as the histogram; every request of this load is traced). Not the injected
latency: on a busy machine the event loop adds its own delay (a p95 of 135 ms was seen for
120 ms injected), and not the clients' latencies, which add the gateway and the load
generator's queueing."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from labkit import canary
from labkit.topology import service
from labkit.waits import wait_for

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

LOAD_S = canary.SETTLE_SECONDS + 6.0  # a full rate window of this load, then three rule samples


def traced(lab, since: float, until: float) -> int:
    """How many traces of the window have echo's span stored."""
    return len(lab.traces(service="echo", since=since, until=until, limit=1000))


def served(lab, since: float, until: float) -> pd.Series:
    """How long echo's instances took over each request (ms), from their server spans."""
    return lab.spans("echo", since=since, until=until, kind="SERVER",
                     limit=1000)["duration_ms"]


@pytest.fixture
def healed(lab):
    lab.heal()
    yield lab
    lab.heal()


@pytest.mark.parametrize("latency_ms", [120, 300, 450])
def test_the_reported_p95_is_within_ten_percent_of_the_clients(healed, latency_ms):
    lab = healed
    for slot in lab.backend.active_slots(service("echo")):
        lab.fault("echo", slot, latency=f"{latency_ms}ms")
    started = time.time()
    # every request traced, whatever the lab's sampling: each one's span is the truth
    frame = lab.load("http://echo.localhost/", rps=25, seconds=LOAD_S, trace_sample=1.0)
    ended = time.time()
    assert (frame["status"] == 200).all(), frame["status"].value_counts()
    # Exporters send every second, but on a busy machine a batch can wait on the store's
    # group commit or prune; say what had arrived, and what the store counted, if it never does.
    wait_for(lambda: traced(lab, started, ended) >= len(frame),
             what="every request's span in the telemetry store", timeout=45,
             diagnose=lambda: f"{traced(lab, started, ended)} of {len(frame)} traces "
                              f"arrived; the store's counters: {lab.store.stats()}")
    spans = served(lab, started, ended)
    assert len(spans) == len(frame), f"{len(spans)} echo spans for {len(frame)} requests"
    truth = spans.quantile(0.95)

    recorded = lab.metrics('service:lab_request_duration_seconds:p95_rate10s{service="echo"}',
                           end=ended)
    reported = {
        "labkit (the service's recording rule)": float(recorded["value"].iloc[0]) * 1000,
        "the canary analysis": canary.measure(
            lab.prometheus, "echo", started + canary.SETTLE_SECONDS, ended)["v1"].p95_ms,
    }
    # measured over 3 runs: within 0.2-1.7% (120 ms), 0.5-1.4% (300), 0.5% (450); the former
    # buckets read 243, 488 and 490 ms
    for who, p95 in reported.items():
        assert abs(p95 - truth) <= 0.10 * truth, \
            f"{who} reports p95 {p95:.0f} ms; the instances took {truth:.0f} ms at p95 " \
            f"({latency_ms} ms injected)"
