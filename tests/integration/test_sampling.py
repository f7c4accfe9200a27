"""The lab's trace sampling, end to end (issue #14): one setting, decided where a request
enters (the load generator or the gateway), followed by every hop; a trace is complete or
absent, also while the setting changes under load; whatever the rate, a request that fails or
is slower than keep_slower_than has its span kept by the service that failed or lagged."""

from __future__ import annotations

import http.client
import secrets
import threading
import time
from collections import Counter

import httpx
import pandas as pd
import pytest

from labkit.errors import LabError
from labkit.lab import Lab
from labkit.telemetry_settings import TelemetrySettings
from labkit.topology import infra, service
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
    assert failed.empty, (f"{len(failed)} of {len(frame)} requests failed:\n"
                          f"{failed[['scheduled', 'status', 'error']].head()}")
    traces = settled_traces(sampling, since, at_least=1)
    partial = {t: h for t in traces["trace_id"] if (h := hops(sampling, t)) != HOPS}
    assert not partial, f"{len(partial)} of {len(traces)} traces lack hops: {partial}"
    # at 0 for 3 s, then 1 for 4 s at 20 rps: well over 40 traces; never all 320
    assert 40 < len(traces) < len(frame), f"{len(traces)} traces of {len(frame)} requests"


def test_a_gateway_restart_answers_every_fresh_connection(sampling: Lab):
    # Traefik's sampling is in its static configuration: a change restarts the gateway
    # beside a stand-in. Clients that open a connection per request (no keep-alive) meet
    # every listener the port has, including one still loading its routes (404 then,
    # measured 785 of 18,700 before labkit.reuseport) or one stopping (reset).
    gateway, outcomes, stop = infra().gateway, [], threading.Event()

    def one_request_per_connection() -> None:
        while not stop.is_set():
            try:
                conn = http.client.HTTPConnection(gateway.host, gateway.port, timeout=5)
                conn.request("GET", "/", headers={"Host": "echo.localhost",
                                                  "Connection": "close"})
                outcomes.append(conn.getresponse().status)
            except OSError as error:
                outcomes.append(type(error).__name__)
            finally:
                conn.close()

    clients = [threading.Thread(target=one_request_per_connection) for _ in range(3)]
    for client in clients:
        client.start()
    try:
        for rate in (1, 0.3):
            sampling.telemetry(sample=rate)
            time.sleep(0.5)
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=10)
    failed = Counter(o for o in outcomes if o != 200)
    assert len(outcomes) > 300 and not failed, f"{sum(failed.values())} of {len(outcomes)} " \
        f"fresh connections failed: {dict(failed)}"


def untraced_gets(host: str, count: int) -> list[tuple[str, int]]:
    """`count` GETs through the gateway, each with its own trace context, not sampled (as the
    load generator sends at a rate of 0): (trace id, status) of each."""
    seen = []
    with httpx.Client(base_url=infra().gateway.url, headers={"Host": host}, timeout=5) as c:
        for _ in range(count):
            trace_id = secrets.token_hex(16)
            context = f"00-{trace_id}-{secrets.token_hex(8)}-00"
            seen.append((trace_id, c.get("/", headers={"traceparent": context}).status_code))
    return seen


def stored_spans(lab: Lab, trace_id: str) -> pd.DataFrame | None:
    try:
        return lab.trace(trace_id)
    except LabError:  # "no trace ...": nothing stored (yet)
        return None


def fault_every_echo(lab: Lab, **faults: object) -> None:
    for slot in lab.backend.active_slots(service("echo")):
        lab.fault("echo", slot, **faults)


def test_failed_and_slow_requests_are_kept_at_any_rate(sampling: Lab):
    sampling.telemetry(sample=0, keep_slower_than="300ms")
    shown = sampling.status().set_index("component")["keep_slower_than_ms"].dropna()
    assert not shown.empty and shown.eq(300).all(), shown
    fault_every_echo(sampling, error_rate=1.0)
    failed = untraced_gets("echo.localhost", 10)
    assert {status for _, status in failed} == {500}, failed
    sampling.heal()
    fast = untraced_gets("echo.localhost", 10)
    fault_every_echo(sampling, latency="500ms")
    slow = untraced_gets("echo.localhost", 3)
    sampling.heal()
    assert {status for _, status in fast + slow} == {200}

    def kept() -> dict[str, pd.DataFrame] | None:
        found = {t: stored_spans(sampling, t) for t, _ in failed + slow}
        return None if any(spans is None for spans in found.values()) else found

    found = wait_for(kept, what="the spans of every failed and every slow request", timeout=20,
                     interval=0.5, diagnose=lambda: f"stored: {sampling.traces(since='1m')}")
    for trace_id, _ in failed:
        echo = found[trace_id].query("service == 'echo' and kind == 'SERVER'")
        assert echo["status"].tolist() == ["ERROR"], (trace_id, found[trace_id])
    for trace_id, _ in slow:
        echo = found[trace_id].query("service == 'echo' and kind == 'SERVER'")
        assert len(echo) == 1 and echo["duration_ms"].iat[0] >= 500, found[trace_id]
    # the slow ones were sent after the fast ones and are stored: the fast ones' spans, had
    # they been kept, would be too (each instance exports in order, every second)
    time.sleep(2)
    stored_fast = [t for t, _ in fast if stored_spans(sampling, t) is not None]
    assert not stored_fast, f"{len(stored_fast)} of {len(fast)} fast successes were kept"
