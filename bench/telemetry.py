"""The telemetry store's ingest at its size cap: peak, sustained rate with zero loss, CPU per span.

Every run of phases 1-2 starts a store on its own copy of one database prefilled to the
store's size cap (--max-bytes), so pruning runs throughout, as in a lab that has been up
for a while; the store is stopped afterwards.
1. peak: N processes post OTLP/protobuf requests (512 spans each, fresh ids every time) as
   fast as the store answers, for --peak-seconds; spans/s acknowledged, 503s, the store's
   CPU per span.
2. sustained: N processes run the real SDK pipeline (TracerProvider, BatchSpanProcessor,
   OTLPSpanExporter, with the SDK's default batch settings) paced to each of --rates
   spans/s in total for --seconds; the rate stored (spans acknowledged over the time from
   the first span to the last flush), the loss (spans ended but never acknowledged: the
   SDK drops them when its queue is full or its retries run out; must be 0), the 503s the
   store answered, and the CPU per span of the store and of the producers.
3. live: the lab's stack (started if needed), the load generator on web; every answered
   request must leave its 11 spans in the store (Traefik and 3 services).
Medians [min-max] over --runs runs. --stack measures another copy of labstack (e.g. the
previous commit's, for a before/after); --no-live skips phase 3.
Run: .venv/bin/python bench/telemetry.py [--producers N] [--rates R,R] [--seconds S] [--runs K]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
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
from common import print_medians

from labkit.processes import stop_child

ROOT = Path(__file__).resolve().parents[1]
HOST, PORT = "127.0.5.30", 4318
URL = f"http://{HOST}:{PORT}"
SPANS_PER_TRACE = 5
MIB = 1024 * 1024


@contextmanager
def store_process(stack: Path, db: Path, max_bytes: int) -> Iterator[psutil.Process]:
    """A store on `db`, stopped afterwards (its log goes beside the database)."""
    env = {**os.environ, "PYTHONPATH": str(stack)}
    command = [sys.executable, "-m", "labstack.telemetry", "--host", HOST, "--port", str(PORT),
               "--db", str(db), "--max-bytes", str(max_bytes)]  # fmt: skip
    log_path = db.with_suffix(".log")
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _healthy():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the store did not start:\n{log_path.read_text()}")
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


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


# --- producers (each runs in its own process) -----------------------------------------------


def push_raw(index: int, seconds: float, until_full: bool = False) -> dict:
    """Post 512-span requests back to back for `seconds` (or until the store prunes by size,
    if `until_full`); returns spans the store accepted and when."""
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
        for sent in range(1 << 62):
            if time.time() - first >= seconds:
                break
            if until_full and sent % 20 == 0 and stats()["pruned"].get("spans_by_size"):
                break
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
    sent, late = 0, 0.0
    first, cpu = time.time(), time.process_time()
    start = time.monotonic()
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
    return {"sent": sent, "flushed": flushed, "late_s": late, "first": first, "done": time.time(),
            "cpu_s": time.process_time() - cpu}  # fmt: skip


def _pool(workers: int) -> ProcessPoolExecutor:
    # spawn: each producer is a fresh interpreter, like a service process
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


# --- phases ---------------------------------------------------------------------------------


def prefill(stack: Path, db: Path, max_bytes: int, producers: int) -> None:
    """Fill a store until it prunes by size, then stop it: `db` is a store at its cap."""
    with store_process(stack, db, max_bytes), _pool(producers) as pool:
        for future in [pool.submit(push_raw, i, 600, True) for i in range(producers)]:
            future.result()


@contextmanager
def full_store(template: Path, stack: Path, max_bytes: int) -> Iterator[psutil.Process]:
    """A store on a fresh copy of the prefilled database."""
    with tempfile.TemporaryDirectory(prefix="telemetry-run-", dir=template.parent) as tmp:
        db = Path(tmp, "run.db")
        for suffix in ("", "-wal"):  # a WAL left by the prefill holds data too
            if Path(f"{template}{suffix}").exists():
                shutil.copyfile(f"{template}{suffix}", f"{db}{suffix}")
        with store_process(stack, db, max_bytes) as store:
            yield store


def peak(store: psutil.Process, producers: int, seconds: float) -> dict[str, float]:
    cpu = cpu_seconds(store)
    with _pool(producers) as pool:
        runs = [f.result() for f in [pool.submit(push_raw, i, seconds) for i in range(producers)]]
    cpu = cpu_seconds(store) - cpu
    window = max(r["last"] for r in runs) - min(r["first"] for r in runs)
    accepted = sum(r["accepted"] for r in runs)
    return {"spans/s": accepted / window, "503s": sum(r["retries"] for r in runs),
            "store CPU us/span": cpu / accepted * 1e6}  # fmt: skip


def sustained(store: psutil.Process, producers: int, rate: float, seconds: float) -> dict:
    before, cpu = stats(), cpu_seconds(store)
    rss = []
    with _pool(producers) as pool:
        futures = [pool.submit(paced_sdk, i, rate / producers, seconds) for i in range(producers)]
        deadline = time.monotonic() + seconds + 120
        while not all(f.done() for f in futures) and time.monotonic() < deadline:
            time.sleep(0.5)
            rss.append(store.memory_info().rss)
        runs = [f.result(timeout=60) for f in futures]
    cpu = cpu_seconds(store) - cpu
    after = stats()
    sent = sum(r["sent"] for r in runs)
    stored = after["accepted"].get("spans", 0) - before["accepted"].get("spans", 0)
    window = max(r["done"] for r in runs) - min(r["first"] for r in runs)
    return {
        "stored spans/s": stored / window,
        "lost spans": sent - stored,
        "503s": after["rejected"].get("busy", 0) - before["rejected"].get("busy", 0),
        "store CPU us/span": cpu / max(stored, 1) * 1e6,
        "store CPU %": 100 * cpu / window,
        "producers CPU us/span": sum(r["cpu_s"] for r in runs) / sent * 1e6,
        "producers late s": max(r["late_s"] for r in runs),
        "store RSS MiB": max(rss, default=0) / MIB,
    }


SPANS_PER_WEB_REQUEST = 11  # Traefik 2 + web 3 + (Traefik 2 + echo 1) + (Traefik 2 + routeguide 1)


def under_load(lab, rps: float, seconds: float) -> dict:
    """The live stack: the load generator on web; is every span of every request stored?

    Each answered request to web makes 11 spans in five processes (see notebook 10); the
    store's accepted count must grow by exactly that many per request once all have flushed.
    """
    lab.scale("echo", 3)
    default = lab.telemetry()["sample"]
    lab.telemetry(sample=1)  # every request's spans, to count them (the lab's default: 10%)
    before = _settled_count(lab)
    df = lab.load("http://web.localhost/", rps=rps, seconds=seconds)
    lab.telemetry(sample=default)
    stored = _settled_count(lab) - before
    answered = int((df["status"] == 200).sum())
    return {
        "requests": len(df),
        "answered": answered,
        "stored": stored,
        "expected": answered * SPANS_PER_WEB_REQUEST,
        "loss": answered * SPANS_PER_WEB_REQUEST - stored,
        "spans/s": answered * SPANS_PER_WEB_REQUEST / seconds,
    }


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


def rates(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 < value < 1e6 for value in values):
        raise argparse.ArgumentTypeError(f"--rates takes spans/s such as 10000,30000; not {text!r}")
    return values


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument(
        "--rates",
        type=rates,
        default=[10_000.0, 20_000.0, 30_000.0],
        help="sustained spans/s in total, one phase-2 run set per rate",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="sustained phase length")
    parser.add_argument("--peak-seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (at least 3)")
    parser.add_argument(
        "--max-bytes",
        type=int,
        default=256 * MIB,
        help="the store's size cap, prefilled (default: the store's, 256 MiB)",
    )
    parser.add_argument(
        "--stack",
        type=Path,
        default=ROOT / "stack",
        help="the directory holding the labstack package to measure",
    )
    parser.add_argument(
        "--web-rps", type=float, default=100.0, help="load generator rate on web for the live phase"
    )
    parser.add_argument("--no-live", action="store_true", help="skip the live-stack phase")
    args = parser.parse_args()
    if args.runs < 3:
        parser.error("--runs must be at least 3: the figures are medians with ranges")

    print(
        f"telemetry store ingest, {psutil.cpu_count()} cores: store at its size cap "
        f"(--max-bytes {args.max_bytes / MIB:g} MiB, prefilled), {args.producers} producer "
        f"processes; median [min-max] of {args.runs} runs; labstack from {args.stack}"
    )
    with tempfile.TemporaryDirectory(prefix="telemetry-bench-") as tmp:
        template = Path(tmp, "full.db")
        prefill(args.stack, template, args.max_bytes, args.producers)
        print(f"  peak ({args.peak_seconds:g} s, raw OTLP/protobuf, 512 spans/request):")
        runs = []
        for _ in range(args.runs):
            with full_store(template, args.stack, args.max_bytes) as store:
                runs.append(peak(store, args.producers, args.peak_seconds))
        print_medians(runs, indent="    ")
        for rate in args.rates:
            print(
                f"  sustained {rate:,.0f} spans/s for {args.seconds:g} s (SDK "
                f"BatchSpanProcessor with its defaults, OTLPSpanExporter):"
            )
            runs = []
            for _ in range(args.runs):
                with full_store(template, args.stack, args.max_bytes) as store:
                    runs.append(sustained(store, args.producers, rate, args.seconds))
            print_medians(runs, indent="    ")
            if any(run["lost spans"] for run in runs):
                print("    LOSS: spans were ended but not stored")
    if args.no_live:
        return
    from common import running_lab

    print(
        f"  live stack, load generator on web at {args.web_rps:g} rps for {args.seconds:g} s "
        f"(11 spans per request from Traefik and three services):"
    )
    with running_lab() as lab:
        live = [under_load(lab, args.web_rps, args.seconds) for _ in range(args.runs)]
    print_medians(live, indent="    ")


if __name__ == "__main__":
    main()
