"""The telemetry store's ingest: peak spans/s, and zero loss at the lab's sustained rate.

1. peak: N processes post OTLP/protobuf requests (512 spans each, fresh ids every
   time) as fast as the store answers, for --peak-seconds; prints spans/s stored.
2. sustained: N processes run the real SDK pipeline (TracerProvider,
   BatchSpanProcessor, OTLPSpanExporter) paced to --rate spans/s in total, for
   --seconds; prints spans sent vs stored (the loss must be 0) and the store's
   RSS and CPU.
3. live: the lab's stack (started if needed), the load generator on web; every
   answered request must leave its 11 spans in the store (Traefik and 3 services).
Phases 1-2 start their own store on 127.0.5.30:4318 with a temporary database and
stop it afterwards; --no-live skips phase 3.
Run: .venv/bin/python bench/telemetry.py [--producers N] [--rate R] [--seconds S]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from labkit.processes import stop_child

ROOT = Path(__file__).resolve().parents[1]
HOST, PORT = "127.0.5.30", 4318
URL = f"http://{HOST}:{PORT}"
SPANS_PER_TRACE = 5


@contextmanager
def store_process() -> Iterator[psutil.Process]:
    """A store with a fresh database, stopped (and its files removed) afterwards."""
    with tempfile.TemporaryDirectory(prefix="telemetry-bench-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "stack")}
        command = [sys.executable, "-m", "labstack.telemetry", "--host", HOST,
                   "--port", str(PORT), "--db", f"{tmp}/bench.db"]  # fmt: skip
        with open(f"{tmp}/store.log", "w") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while not _healthy():
                if process.poll() is not None or time.monotonic() > deadline:
                    log_text = Path(tmp, "store.log").read_text()
                    raise RuntimeError(f"the store did not start:\n{log_text}")
                time.sleep(0.1)
            yield psutil.Process(process.pid)
        finally:
            stop_child(process, grace=30)


def _healthy() -> bool:
    try:
        return httpx.get(f"{URL}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def stats() -> dict:
    return httpx.get(f"{URL}/api/stats", timeout=30).json()


# --- producers (each runs in its own process) -----------------------------------------------


def push_raw(index: int, seconds: float) -> dict:
    """Post 512-span requests back to back; returns spans the store accepted and when."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for key, value in (("service.name", "bench"), ("service.instance.id", f"bench-{index}")):
        attribute = resource_spans.resource.attributes.add()
        attribute.key, attribute.value.string_value = key, value
    spans = resource_spans.scope_spans.add().spans
    for i in range(512):
        span = spans.add()
        span.name, span.kind = f"GET /item/{i % 7}", 2 if i % SPANS_PER_TRACE == 0 else 3
        for key, value in (("http.method", "GET"), ("http.route", "/item/{id}"),
                           ("net.peer.name", "127.0.1.1")):  # fmt: skip
            attribute = span.attributes.add()
            attribute.key, attribute.value.string_value = key, value
    accepted, retries = 0, 0
    headers = {"Content-Type": "application/x-protobuf"}
    with httpx.Client(timeout=30) as client:
        first = time.time()
        while time.time() - first < seconds:
            now = time.time_ns()
            for i, span in enumerate(spans):
                if i % SPANS_PER_TRACE == 0:
                    trace_id = os.urandom(16)
                span.trace_id, span.span_id = trace_id, os.urandom(8)
                span.start_time_unix_nano, span.end_time_unix_nano = now, now + 2_000_000
            response = client.post(f"{URL}/v1/traces", content=request.SerializeToString(),
                                   headers=headers)  # fmt: skip
            if response.status_code == 200:
                accepted += len(spans)
            else:
                retries += 1
                time.sleep(0.05)
        return {"accepted": accepted, "first": first, "last": time.time(), "retries": retries}


def paced_sdk(index: int, rate: float, seconds: float) -> dict:
    """The real SDK pipeline at `rate` spans/s (traces of 5 spans); returns spans ended."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind

    resource = Resource.create({"service.name": "paced", "service.instance.id": f"paced-{index}"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{URL}/v1/traces")))
    tracer = provider.get_tracer("bench")
    interval = SPANS_PER_TRACE / rate
    sent, start, late = 0, time.monotonic(), 0.0
    for i in range(int(seconds / interval)):
        due = start + i * interval
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            late = max(late, -delay)
        with tracer.start_as_current_span("GET /checkout", kind=SpanKind.SERVER) as root:
            root.set_attribute("http.route", "/checkout")
            for step in range(SPANS_PER_TRACE - 1):
                with tracer.start_as_current_span(f"step {step}", kind=SpanKind.CLIENT) as span:
                    span.set_attribute("peer.service", "cart")
        sent += SPANS_PER_TRACE
    flushed = provider.force_flush(60_000)
    provider.shutdown()
    return {"sent": sent, "flushed": flushed, "late_s": late}


# --- phases ---------------------------------------------------------------------------------


def peak(producers: int, seconds: float) -> dict:
    with store_process(), _pool(producers) as pool:
        runs = [f.result() for f in [pool.submit(push_raw, i, seconds) for i in range(producers)]]
        window = max(r["last"] for r in runs) - min(r["first"] for r in runs)
        accepted = sum(r["accepted"] for r in runs)
        stored = stats()["spans"]
    return {"spans/s": accepted / window, "accepted": accepted, "stored": stored,
            "503s": sum(r["retries"] for r in runs)}  # fmt: skip


def sustained(producers: int, rate: float, seconds: float) -> dict:
    with store_process() as store, _pool(producers) as pool:
        futures = [pool.submit(paced_sdk, i, rate / producers, seconds) for i in range(producers)]
        rss, cpu = [], []
        store.cpu_percent()
        deadline = time.monotonic() + seconds + 60
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            time.sleep(0.5)
            rss.append(store.memory_info().rss)
            cpu.append(store.cpu_percent())
        runs = [f.result(timeout=60) for f in futures]
        final = stats()
    sent = sum(r["sent"] for r in runs)
    return {
        "sent": sent,
        "stored": final["spans"],
        "loss": sent - final["spans"],
        "rejected": final["rejected"],
        "flushed": all(r["flushed"] for r in runs),
        "late_s": max(r["late_s"] for r in runs),
        "rss_mib": max(rss, default=0) / 2**20,
        "cpu_pct": sum(cpu) / max(len(cpu), 1),
    }


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn: each producer is a fresh interpreter, like a service process
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


SPANS_PER_WEB_REQUEST = 11  # Traefik 2 + web 3 + (Traefik 2 + echo 1) + (Traefik 2 + routeguide 1)


def under_load(rps: float, seconds: float) -> dict:
    """The live stack: the load generator on web; is every span of every request stored?

    Each answered request to web makes 11 spans in five processes (see notebook 10); the
    store's accepted count must grow by exactly that many per request once all have flushed.
    """
    from common import running_lab

    with running_lab() as lab:
        lab.scale("echo", 3)
        before = _settled_count(lab)
        df = lab.load("http://web.localhost/", rps=rps, seconds=seconds)
        stored = _settled_count(lab) - before
    answered = int((df["status"] == 200).sum())
    return {"requests": len(df), "answered": answered, "stored": stored,
            "expected": answered * SPANS_PER_WEB_REQUEST,
            "spans/s": answered * SPANS_PER_WEB_REQUEST / seconds}


def _settled_count(lab, quiet_s: float = 6.0, timeout: float = 60.0) -> int:
    """Spans accepted, once the count has not moved for `quiet_s` (Traefik exports every 5 s)."""
    deadline = time.monotonic() + timeout
    count, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = lab.store.stats()["accepted"].get("spans", 0)
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return count
        time.sleep(0.5)
    raise RuntimeError("the span count never settled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=1000.0, help="sustained spans/s in total")
    parser.add_argument("--seconds", type=float, default=20.0, help="sustained phase length")
    parser.add_argument("--peak-seconds", type=float, default=10.0)
    parser.add_argument("--web-rps", type=float, default=100.0,
                        help="load generator rate on web for the live phase")
    parser.add_argument("--no-live", action="store_true", help="skip the live-stack phase")
    args = parser.parse_args()

    top = peak(args.producers, args.peak_seconds)
    steady = sustained(args.producers, args.rate, args.seconds)

    print(f"telemetry store ingest: {args.producers} producer processes, "
          f"{psutil.cpu_count()} cores")
    print(f"  peak ({args.peak_seconds:g} s, raw OTLP/protobuf, 512 spans/request): "
          f"{top['spans/s']:,.0f} spans/s ({top['accepted']:,} accepted, "
          f"{top['stored']:,} stored, {top['503s']} answered 503)")  # fmt: skip
    print(f"  sustained ({args.rate:g} spans/s for {args.seconds:g} s, SDK BatchSpanProcessor):")
    print(f"    {'sent':>8}  {'stored':>8}  {'loss':>5}  {'rejected':>10}  {'RSS MiB':>7}  "
          f"{'CPU %':>5}  {'producer late s':>15}")
    print(f"    {steady['sent']:>8,}  {steady['stored']:>8,}  {steady['loss']:>5}  "
          f"{sum(steady['rejected'].values()):>10}  {steady['rss_mib']:>7.0f}  "
          f"{steady['cpu_pct']:>5.0f}  {steady['late_s']:>15.3f}")
    if steady["loss"] or not steady["flushed"]:
        print("    LOSS: spans were sent but not stored")
    if args.no_live:
        return
    live = under_load(args.web_rps, args.seconds)
    print(f"  live stack, load generator on web at {args.web_rps:g} rps for {args.seconds:g} s "
          f"({live['spans/s']:,.0f} spans/s from Traefik and three services):")
    print(f"    {live['answered']:,} of {live['requests']:,} requests answered; spans expected "
          f"{live['expected']:,}, stored {live['stored']:,}, "
          f"loss {live['expected'] - live['stored']:,}")


if __name__ == "__main__":
    main()
