"""The lab's trace sampling, end to end (issue #14): one setting, decided where a request
enters (the load generator or the gateway), followed by every hop; a trace is complete or
absent, also while the setting changes under load."""

from __future__ import annotations

import time

import httpx
import pandas as pd
import pytest

from labkit.lab import Lab
from labkit.telemetry_settings import TelemetrySettings
from labkit.topology import infra
from labkit.waits import wait_for

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

HOPS = {"traefik", "web", "echo", "routeguide"}  # a request to web reaches all of them
DEFAULTS = TelemetrySettings()
# services export every second, Traefik every 5 s (the Go SDK's batch delay): settled when
# no span arrived for longer than that
EXPORT_SETTLE_S = 6.0


@pytest.fixture
def sampling(lab: Lab):
    lab.heal()
    yield lab
    lab.heal()
    lab.telemetry(sample=DEFAULTS.sample, keep_slower_than=DEFAULTS.keep_slower_than_ms / 1000,
                  log_level=DEFAULTS.log_level)


def gateway_gets(host: str, count: int) -> list[int]:
    """`count` GETs through the gateway without trace context (a browser's, curl's)."""
    with httpx.Client(base_url=infra().gateway.url, headers={"Host": host}, timeout=5) as c:
        return [c.get("/").status_code for _ in range(count)]


def settled_traces(lab: Lab, since: float, at_least: int = 0) -> pd.DataFrame:
    """The traces started since `since`, once at least `at_least` are stored and no span
    arrived for EXPORT_SETTLE_S."""
    seen: list[tuple[int, int]] = []
    polls = int(EXPORT_SETTLE_S / 0.5)

    def settled() -> tuple[pd.DataFrame] | None:  # a tuple: an empty frame is an answer too
        traces = lab.traces(since=since, limit=1000)
        seen.append((len(traces), int(traces["span_count"].sum())))
        steady = len(seen) > polls and len(set(seen[-polls:])) == 1
        return (traces,) if steady and len(traces) >= at_least else None

    return wait_for(settled, what=f"at least {at_least} traces, then no new span", timeout=60,
                    interval=0.5, diagnose=lambda: f"(traces, spans) seen: {seen[-10:]}")[0]


def hops(lab: Lab, trace_id: str) -> set[str]:
    spans = lab.trace(trace_id)
    orphans = spans[(spans["parent_span_id"] != "")
                    & ~spans["parent_span_id"].isin(spans["span_id"])]
    # the load generator's parent span is not recorded: Traefik's may name it, nothing else
    assert set(orphans["service"]) <= {"traefik"}, orphans[["service", "name"]]
    return set(spans["service"])


def test_at_zero_no_request_leaves_a_trace(sampling: Lab):
    sampling.telemetry(sample=0)
    assert sampling.status().set_index("component")["trace_sample"].dropna().eq(0).all()
    since = time.time()
    assert gateway_gets("web.localhost", 20) == [200] * 20
    frame = sampling.load("http://web.localhost/", rps=20, seconds=2)
    assert (frame["status"] == 200).all()
    assert settled_traces(sampling, since).empty


def test_at_one_every_request_has_its_complete_trace(sampling: Lab):
    sampling.telemetry(sample=1)
    since = time.time()
    assert gateway_gets("web.localhost", 10) == [200] * 10
    frame = sampling.load("http://web.localhost/", rps=10, seconds=1)
    sent = 10 + len(frame)
    traces = settled_traces(sampling, since, at_least=sent)
    assert len(traces) == sent, f"{sent} requests, {len(traces)} traces"
    incomplete = {t: h for t in traces["trace_id"] if (h := hops(sampling, t)) != HOPS}
    assert not incomplete, f"traces missing hops of {sorted(HOPS)}: {incomplete}"


def test_changing_the_rate_under_load_fails_no_request_and_leaves_no_partial_trace(
        sampling: Lab):
    sampling.telemetry(sample=0)
    since = time.time()
    # no trace context from the client: the gateway decides, at the rate of the moment (a
    # load with the lab's context keeps the rate it started with)
    load = sampling.start_load("http://web.localhost/", rps=20, seconds=16, timeout=5,
                               trace_sample=None)
    time.sleep(3)
    sampling.telemetry(sample=1)  # the gateway restarts on its new sampler meanwhile
    time.sleep(4)
    sampling.telemetry(sample=0.3)
    frame = load.result()
    failed = frame[frame["status"] != 200]
    assert failed.empty, f"{len(failed)} of {len(frame)} requests failed:\n{failed.head()}"
    traces = settled_traces(sampling, since, at_least=1)
    partial = {t: h for t in traces["trace_id"] if (h := hops(sampling, t)) != HOPS}
    assert not partial, f"{len(partial)} of {len(traces)} traces lack hops: {partial}"
    # at 0 for 3 s, then 1 for 4 s at 20 rps: well over 40 traces; never all 320
    assert 40 < len(traces) < len(frame), f"{len(traces)} traces of {len(frame)} requests"

