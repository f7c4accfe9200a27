"""Fixtures for the telemetry store tests: real store processes on 127.<block>.5.N:4318.

Each store runs `python -m labstack.telemetry` with a database under tmp_path and is
stopped at teardown; its log is printed when a test using it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from services.support import worker_host

from labkit.errors import LabError
from labkit.ports import ensure_free
from labkit.processes import stop_child
from labkit.telemetry import Telemetry
from labkit.topology import Endpoint
from labkit.waits import wait_for

ROOT = Path(__file__).resolve().parents[2]
PORT = 4318


@dataclass
class StoreProcess:
    process: subprocess.Popen
    host: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{PORT}"

    def client(self) -> Telemetry:
        return Telemetry(self.url, timeout=10)

    def post(self, signal: str, body: bytes, content_type: str, **headers: str) -> httpx.Response:
        headers = {"Content-Type": content_type, **headers}
        return httpx.post(f"{self.url}/v1/{signal}", content=body, headers=headers, timeout=30)

    def stop(self) -> None:
        stop_child(self.process, grace=15)


def start_store(tmp_path: Path, host: str, *flags: str) -> StoreProcess:
    # another run's store on this address would answer our health check and our tests
    ensure_free([(f"a test telemetry store on {host}", Endpoint(host, PORT))])
    log_path = tmp_path / f"store-{host}.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "stack"),
                                                                    os.environ.get("PYTHONPATH")]))}
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "labstack.telemetry", "--host", host, "--port", str(PORT),
             "--db", str(tmp_path / f"{host}.db"), *flags],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    store = StoreProcess(process, host, log_path)

    def healthy() -> bool:
        if process.poll() is not None:
            raise LabError(f"the store exited with {process.returncode}:\n{log_path.read_text()}")
        return httpx.get(f"{store.url}/health", timeout=1).status_code == 200

    try:
        wait_for(healthy, what=f"the telemetry store on {host}", timeout=30,
                 diagnose=log_path.read_text, hint="is another store on this address?")  # fmt: skip
    except BaseException:
        store.stop()
        raise
    return store


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreProcess]:
    """One store shared by the tests that only add data under their own service names."""
    server = start_store(tmp_path_factory.mktemp("telemetry"), worker_host(5, 1))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_store(tmp_path: Path) -> Iterator[Callable[..., StoreProcess]]:
    """Start a store with its own flags on 127.<block>.5.2, .3, ...; all stopped at teardown."""
    started: list[StoreProcess] = []

    def start(*flags: str) -> StoreProcess:
        started.append(start_store(tmp_path, worker_host(5, len(started) + 2), *flags))
        return started[-1]

    try:
        yield start
    finally:
        for server in started:
            server.stop()
            # pytest shows teardown output only for a failed test: there, the log helps
            print(f"--- {server.log_path.name} ---\n{server.log_path.read_text()}")


def unique(name: str) -> str:
    """A service name no other test uses, so tests can share one store."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


@dataclass
class Sdk:
    """A TracerProvider and LoggerProvider exporting to a store, as a service would."""

    tracer_provider: TracerProvider
    logger_provider: LoggerProvider

    def flush(self) -> None:
        assert self.tracer_provider.force_flush(30_000), "spans were not exported in 30 s"
        assert self.logger_provider.force_flush(30_000), "logs were not exported in 30 s"

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()


@pytest.fixture
def sdk() -> Iterator[Callable[..., Sdk]]:
    """Make SDK pipelines with the real OTLP/HTTP exporters; shut down at teardown."""
    made: list[Sdk] = []

    def make(url: str, service: str, instance: str = "", gzip: bool = False) -> Sdk:
        attributes = {"service.name": service}
        if instance:
            attributes["service.instance.id"] = instance
        resource = Resource.create(attributes)
        compression = Compression.Gzip if gzip else Compression.NoCompression
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(BatchSpanProcessor(
            OTLPSpanExporter(endpoint=f"{url}/v1/traces", compression=compression, timeout=30)
        ))  # fmt: skip
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=f"{url}/v1/logs", compression=compression, timeout=30)
        ))  # fmt: skip
        made.append(Sdk(tracer_provider, logger_provider))
        return made[-1]

    try:
        yield make
    finally:
        for pipeline in made:
            pipeline.shutdown()


def span_request(service: str, traces: int, start_ns: int, spans_per_trace: int = 1) -> bytes:
    """A protobuf ExportTraceServiceRequest with `traces` traces, built without the SDK."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    _name(resource_spans.resource, service)
    spans = resource_spans.scope_spans.add().spans
    for t in range(traces):
        trace_id = uuid.uuid4().bytes
        for s in range(spans_per_trace):
            span = spans.add()
            span.trace_id, span.span_id = trace_id, os.urandom(8)
            span.name, span.kind = f"op-{s}", 2
            span.start_time_unix_nano = start_ns + t * 1000
            span.end_time_unix_nano = span.start_time_unix_nano + 5_000_000
    return request.SerializeToString()


def log_request(service: str, count: int, time_ns: int) -> bytes:
    """A protobuf ExportLogsServiceRequest with `count` info records from `time_ns` on."""
    request = ExportLogsServiceRequest()
    resource_logs = request.resource_logs.add()
    _name(resource_logs.resource, service)
    records = resource_logs.scope_logs.add().log_records
    for i in range(count):
        record = records.add()
        record.time_unix_nano = time_ns + i
        record.severity_number = 9
        record.body.string_value = f"record {i} {uuid.uuid4()}"
    return request.SerializeToString()


def _name(resource: Any, service: str) -> None:
    attribute = resource.attributes.add()
    attribute.key, attribute.value.string_value = "service.name", service


def eventually(probe: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """A bounded wait for something the store does on its own (e.g. pruning)."""
    return wait_for(probe, what=what, timeout=timeout, interval=0.1)


def now_ns() -> int:
    return time.time_ns()
