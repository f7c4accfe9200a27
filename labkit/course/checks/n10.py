"""Notebook 10's exercises: distributed tracing."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import pandas as pd

from ...errors import LabTimeout
from ...waits import wait_for
from ..exercises import Exercise, Findings, choice, number
from .measure import close_to, faulted_instances

if TYPE_CHECKING:
    from ...lab import Lab

WEB_URL = "http://web.localhost/"
HOPS = ("traefik", "web", "echo", "routeguide")
SLOW = "routeguide-1"
FAILING = "echo-3"
SAMPLE = 0.1  # the lab's default sampling, which the exercise returns to
SLOW_TRACE = "100ms"  # the notebook's slow_threshold
RECENT = "5m"  # how far back the learner's slow traces are looked for


def traced_load(lab: Lab, seconds: float) -> float:
    """Send web a traced load (every request sampled); returns when it began."""
    since = time.time()
    lab.load(WEB_URL, rps=10, seconds=seconds, trace_sample=1.0)
    return since


def server_spans(lab: Lab, service: str, since: float) -> pd.DataFrame:
    return lab.spans(service, since=since, kind="SERVER")


def parallel_calls(lab: Lab, web_ms: object) -> Findings:
    said = number(web_ms, "web_ms", 0, 10_000, "web's span duration in ms")
    found = Findings()
    faults = faulted_instances(lab, "routeguide")
    if not found.require(any(f.startswith(f"{SLOW}: latency") for f in faults),
                         f"routeguide's faults: {'; '.join(faults) or 'none'}; the exercise "
                         f"wants {SLOW} slow: lab.fault('routeguide', 1, latency='150ms')"):
        return found
    since = traced_load(lab, seconds=2)

    def joined() -> pd.DataFrame:
        """web's and routeguide-1's server spans of the same requests, once both arrived
        (empty until then: wait_for waits on)."""
        slow = server_spans(lab, "routeguide", since)
        slow = slow[slow["instance"] == SLOW]
        both = slow.merge(server_spans(lab, "web", since), on="trace_id",
                          suffixes=("_slow", "_web"))
        return both if len(both) >= 3 else both.iloc[:0]

    try:
        both = wait_for(joined, what=f"traces of requests {SLOW} served", timeout=15,
                        interval=0.5)
    except LabTimeout as error:
        found.missing.append(f"no traces of requests {SLOW} served: {error}")
        return found
    echo = server_spans(lab, "echo", since)
    web, slow = both["duration_ms_web"].median(), both["duration_ms_slow"].median()
    echo_ms = echo["duration_ms"].median() if len(echo) else math.nan
    found.seen.append(f"in {len(both)} traces {SLOW} served: web {web:.0f} ms, {SLOW} "
                      f"{slow:.0f} ms and echo {echo_ms:.1f} ms (medians)")
    # one trace against the median: a busy machine adds tens of ms to a single request
    found.require(close_to(said, web, 50, 1 / 3),
                  f"you said web took {said:.0f} ms; its spans say {web:.0f} ms. Read the "
                  f"web span of a trace {SLOW} served (lab.plot.trace)")
    return found


def error_origin(lab: Lab, first: object) -> Findings:
    said = choice(first, "first", HOPS)
    found = Findings()
    faults = faulted_instances(lab, "echo")
    if not found.require(any(f.startswith(f"{FAILING}: error_rate") for f in faults),
                         f"echo's faults: {'; '.join(faults) or 'none'}; the exercise wants "
                         f"{FAILING} failing: lab.fault('echo', 3, error_rate=1.0)"):
        return found
    since = traced_load(lab, seconds=2)

    def failed_trace() -> pd.DataFrame:
        for trace_id in lab.traces(service="web", since=since, status="error")["trace_id"]:
            spans = lab.trace(trace_id)
            # complete: every hop's spans in (Traefik's come every 5 s), so depths are right
            # (one root: the load generator's caller span is not in the trace)
            roots = (~spans["parent_span_id"].isin(spans["span_id"])).sum()
            complete = set(spans["service"]) >= set(HOPS) and roots == 1
            if complete and (spans["instance"] == FAILING).any():
                return spans
        return pd.DataFrame()  # none yet

    try:
        spans = wait_for(failed_trace, what=f"a complete failed trace through {FAILING}",
                         timeout=20, interval=0.5)
    except LabTimeout as error:
        found.missing.append(f"no failed trace through {FAILING}: {error}")
        return found
    errors = spans[spans["status"] == "ERROR"].sort_values("depth", ascending=False)
    path = " → ".join(f"{r.service} {r.kind}" for r in errors.itertuples())
    found.seen.append(f"a failed request's spans marked as errors, deepest first: {path}")
    deepest = errors["service"].iat[0]
    found.require(said == deepest,
                  f"you said {said}; look at the deepest span marked as an error in "
                  "lab.plot.trace of a failed trace")
    return found


def sampled_slow_traces(lab: Lab, slow: object, traced: object) -> Findings:
    slow_n = number(slow, "slow", 1, 100_000, "how many requests were slow")
    traced_n = number(traced, "traced", 0, slow_n, "how many slow traces were kept, at most "
                                                   "the slow requests")
    found = Findings()
    sample = float(lab.telemetry()["sample"])
    if not found.require(sample == SAMPLE,
                         f"the lab traces {sample:.0%} of requests: lab.telemetry(sample="
                         f"{SAMPLE}), then run the slow-instance experiment again"):
        return found
    # a binomial count: 3 standard deviations (plus one for small counts) around its mean
    expected = SAMPLE * slow_n
    spread = 3 * math.sqrt(slow_n * SAMPLE * (1 - SAMPLE)) + 1
    found.seen.append(f"at {sample:.0%} sampling, {slow_n:.0f} slow requests leave about "
                      f"{expected:.1f} traces (± {spread:.1f})")
    stored = len(lab.traces(service="web", since=RECENT, min_duration=SLOW_TRACE, limit=1000))
    found.seen.append(f"the store holds {stored} web traces of {SLOW_TRACE} or more from the "
                      f"last {RECENT}")
    found.require(traced_n > 0, "no slow trace left: none to judge by; send more load")
    found.require(traced_n <= stored, f"you found {traced_n:.0f} slow traces, the store holds "
                                      f"{stored} from the last {RECENT}: count them again")
    found.require(abs(traced_n - expected) <= spread,
                  f"you found {traced_n:.0f} slow traces of {slow_n:.0f} slow requests: count "
                  "the slow requests in the load's results (latency_ms) and the traces with "
                  f"lab.traces(service='web', since=..., min_duration='{SLOW_TRACE}', limit=500)")
    return found


EXERCISES = (
    Exercise(
        "10.1", f"{SLOW} slow: how long is web's span, and does it wait for both calls?",
        "For the slow call only: web calls echo and routeguide at once, so its span lasts "
        "about as long as the slower call plus its own few milliseconds, not the sum. The "
        "waterfall shows the two calls side by side; make them sequential and web's span "
        "would grow by echo's time too.",
        parallel_calls, ("web_ms",)),
    Exercise(
        "10.2", f"{FAILING} fails every request: which span is the first error?",
        "echo's server span: echo-3 answers 500 and marks its span as an error. Each hop "
        "above marks its own span when the answer it got (or gives) is an error: Traefik's "
        "proxy span, web's client call, web's server span (web answers 502), Traefik at the "
        "edge. The routeguide branch of the same trace stays fine: an error travels up the "
        "parent chain, never sideways.",
        error_origin, ("first",)),
    Exercise(
        "10.3", f"at {SAMPLE:.0%} sampling: how many slow traces are left?",
        "About a tenth of the slow requests, a handful per run: self time still blames the "
        "right instance in each one, but with so few traces a rare slowness may leave none. "
        "The requests worth keeping whatever the rate are the slow and the failed ones; the "
        "decision can only be made once a request's outcome is known, at the end (tail "
        "sampling in a collector) or by each service for its own spans, as the lab's "
        "keep_slower_than does.",
        sampled_slow_traces, ("slow", "traced")),
)
