"""What a request leaves in the telemetry store, with real web and echo processes and a real
store: one server span per hop in one trace when sampled, nothing but propagated context when
not, unless the request failed or was slow (then its span is kept); a log record for a
failure, none for a success (LAB_LOG_LEVEL=debug brings them back)."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx
import pandas as pd
import pytest
from labstack import routeguide_pb2 as pb
from labstack import routeguide_pb2_grpc as pb_grpc
from labstack.features import FEATURES
from telemetry.conftest import StoreProcess, start_store

from labkit.errors import LabError
from labkit.telemetry import Telemetry

from .support import Service, next_host, wait_registered, wait_until, worker_host

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreProcess]:
    # 5.30: clear of the telemetry tests' stores (5.1, then 5.2 and up)
    server = start_store(tmp_path_factory.mktemp("store"), worker_host(5, 30))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def telemetry(store: StoreProcess) -> Iterator[Telemetry]:
    client = store.client()
    yield client
    client.close()


class Recorder:
    """A stand-in for web's gateway: answers every GET with a small JSON body and keeps the
    headers it was sent (what web passes downstream)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server naming
                recorder.requests.append({k.lower(): v for k, v in self.headers.items()})
                body = json.dumps({"instance": "recorder"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((next_host(), 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def context_for(self, request_id: str) -> tuple[str, str, bool]:
        """(trace id, parent span id, sampled) of the traceparent web sent with a request."""
        header = next(r["traceparent"] for r in self.requests
                      if r.get("x-request-id") == request_id)
        _, trace_id, parent, flags = header.split("-")
        return trace_id, parent, bool(int(flags, 16) & 1)  # other bits: e.g. 2, a random id


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    made = Recorder()
    yield made
    made.server.shutdown()
    made.server.server_close()


def traceparent(sampled: bool) -> tuple[str, str, str]:
    """(header, trace id, parent span id) of a caller's fresh context."""
    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{parent}-{'01' if sampled else '00'}", trace_id, parent


def call(service: Service, request_id: str, header: str | None = None) -> httpx.Response:
    headers = {"x-request-id": request_id, **({"traceparent": header} if header else {})}
    return httpx.get(f"{service.url}/", headers=headers, timeout=10)


def spans_of(telemetry: Telemetry, trace_id: str) -> pd.DataFrame:
    try:
        return telemetry.trace(trace_id)
    except LabError:  # "no trace ...": nothing stored for it
        return pd.DataFrame(columns=["service", "kind"])


def after_a_barrier(telemetry: Telemetry, services: list[Service]) -> None:
    """Once a sampled request to each of `services` has its server span in the store, so has
    everything they exported before it (each exports in the order spans ended)."""
    for service in services:
        header, trace_id, _ = traceparent(sampled=True)
        call(service, f"barrier-{trace_id[:8]}", header)

        def stored(service: Service = service, trace_id: str = trace_id) -> bool:
            spans = spans_of(telemetry, trace_id)
            name = service.env["LAB_SERVICE"]
            return bool(((spans["service"] == name) & (spans["kind"] == "SERVER")).any())

        wait_until(stored, f"{service.env['LAB_SERVICE']}'s barrier span", 20, interval=0.2)


def test_a_sampled_request_is_one_server_span_per_hop_in_one_trace(
        etcd, spawn: Callable[..., Service], store: StoreProcess, telemetry: Telemetry) -> None:
    echo = spawn("echo", LAB_OTLP_ENDPOINT=store.url)
    # web's gateway is echo itself: its HTTP hop reaches echo, its gRPC hop fails (a 502)
    web = spawn("web", LAB_PORT="18090", LAB_GATEWAY=echo.url, LAB_OTLP_ENDPOINT=store.url)
    wait_registered(etcd, echo)
    wait_registered(etcd, web)
    header, trace_id, caller = traceparent(sampled=True)
    assert call(web, "sampled-1", header).status_code == 502
    after_a_barrier(telemetry, [echo, web])

    spans = spans_of(telemetry, trace_id).set_index("span_id", drop=False)
    servers = spans[spans["kind"] == "SERVER"].set_index("service")
    assert sorted(servers.index) == ["echo", "web"], spans[["service", "name", "kind"]]
    assert (spans["service"] == "echo").sum() == 1, "echo makes no span but its server span"
    web_span, echo_span = servers.loc["web"], servers.loc["echo"]
    assert web_span["parent_span_id"] == caller, "web continues the caller's trace"
    client = spans.loc[echo_span["parent_span_id"]]  # web's call to echo, echo's parent
    assert (client["service"], client["kind"]) == ("web", "CLIENT")
    assert client["parent_span_id"] == web_span["span_id"]
    assert (echo_span["name"], echo_span["status"]) == ("GET /", "UNSET")
    assert echo_span["attributes"] == {
        **echo_span["attributes"],
        "http.request.method": "GET", "url.path": "/", "url.scheme": "http", "http.route": "/",
        "http.response.status_code": 200, "request.id": "sampled-1",
        "server.address": "echo.localhost",  # the Host web sends, as through the gateway
    }
    assert (web_span["name"], web_span["status"]) == ("GET /", "ERROR")
    assert web_span["attributes"]["http.response.status_code"] == 502


def test_an_unsampled_request_records_nothing_unless_it_fails_and_passes_its_context_on(
        etcd, spawn: Callable[..., Service], store: StoreProcess, telemetry: Telemetry,
        recorder: Recorder) -> None:
    echo = spawn("echo", LAB_OTLP_ENDPOINT=store.url)
    # LAB_TRACE_SAMPLE=0: web starts no trace of its own, but keeps a caller's decision; its
    # gRPC hop fails (no routeguide behind the recorder): every request to it is a 502
    web = spawn("web", LAB_PORT="18090", LAB_GATEWAY=recorder.url,
                LAB_OTLP_ENDPOINT=store.url, LAB_TRACE_SAMPLE="0")
    wait_registered(etcd, echo)
    wait_registered(etcd, web)
    header, unsampled, caller = traceparent(sampled=False)
    assert call(web, "unsampled-web", header).status_code == 502
    assert call(echo, "unsampled-echo", header).status_code == 200
    assert call(web, "no-context").status_code == 502
    sampled_header, sampled, _ = traceparent(sampled=True)
    call(web, "sampled-web", sampled_header)
    after_a_barrier(telemetry, [echo, web])

    passed_on, _, flagged = recorder.context_for("unsampled-web")
    assert (passed_on, flagged) == (unsampled, False), "the same trace, still not sampled"
    # echo's success left nothing; web's failure its server span, kept in the caller's trace
    kept = spans_of(telemetry, unsampled)
    assert list(zip(kept["service"], kept["kind"], kept["status"], strict=True)) == [
        ("web", "SERVER", "ERROR")], kept[["service", "name", "kind", "status"]]
    assert kept["parent_span_id"].tolist() == [caller], "under the caller's span"
    assert kept["attributes"].iloc[0]["request.id"] == "unsampled-web"
    fresh, _, flagged = recorder.context_for("no-context")
    assert fresh != unsampled and not flagged, "LAB_TRACE_SAMPLE=0 samples nothing"
    assert spans_of(telemetry, fresh)["service"].tolist() == ["web"], "a failure is kept"
    kept_id, parent, flagged = recorder.context_for("sampled-web")
    assert (kept_id, flagged) == (sampled, True), "a caller's sampled trace is kept"
    client = spans_of(telemetry, sampled).set_index("span_id").loc[parent]
    assert (client["service"], client["kind"]) == ("web", "CLIENT"), "the context is the span's"


def test_an_unsampled_request_slower_than_the_threshold_is_kept(
        etcd, spawn: Callable[..., Service], store: StoreProcess, telemetry: Telemetry) -> None:
    echo = spawn("echo", LAB_OTLP_ENDPOINT=store.url, LAB_TRACE_KEEP_SLOWER_MS="150")
    wait_registered(etcd, echo)
    fast_header, fast, _ = traceparent(sampled=False)
    assert call(echo, "fast", fast_header).status_code == 200
    echo.admin_put({"latency": {"ms": 300}}).raise_for_status()
    slow_header, slow, caller = traceparent(sampled=False)
    assert call(echo, "slow", slow_header).status_code == 200
    httpx.delete(echo.admin_url, headers=echo.admin_headers, timeout=2).raise_for_status()
    after_a_barrier(telemetry, [echo])

    assert spans_of(telemetry, fast).empty, "a fast success is not kept"
    kept = spans_of(telemetry, slow)
    assert list(zip(kept["service"], kept["name"], kept["status"], strict=True)) == [
        ("echo", "GET /", "UNSET")], kept[["service", "name", "status"]]
    assert kept["parent_span_id"].tolist() == [caller]
    assert kept["duration_ms"].iloc[0] >= 300


def stored(telemetry: Telemetry, request_id: str) -> list[dict[str, Any]]:
    return telemetry.logs(request_id=request_id).to_dict("records")


def on_stdout(service: Service, request_id: str) -> list[dict[str, Any]]:
    return [line for line in service.logs() if line.get("request_id") == request_id]


def test_a_failed_request_is_logged_and_a_successful_one_is_not(
        etcd, spawn: Callable[..., Service], store: StoreProcess, telemetry: Telemetry) -> None:
    echo = spawn("echo", LAB_OTLP_ENDPOINT=store.url)
    wait_registered(etcd, echo)
    assert call(echo, "ok-1").status_code == 200
    echo.admin_put({"error_rate": 1.0}).raise_for_status()
    assert call(echo, "failed-1").status_code == 500

    (failed,) = wait_until(lambda: stored(telemetry, "failed-1"), "the failure's record", 20,
                           interval=0.2)
    assert (failed["service"], failed["level"], failed["body"]) == ("echo", "warning", "GET / 500")
    assert failed["attributes"]["status"] == 500 and failed["trace_id"]
    assert [line["level"] for line in on_stdout(echo, "failed-1")] == ["warning"]
    # exported in order: the success's record, had there been one, would be stored by now
    assert stored(telemetry, "ok-1") == [] and on_stdout(echo, "ok-1") == []


def test_debug_level_logs_successful_requests_to_the_store(
        etcd, spawn: Callable[..., Service], store: StoreProcess, telemetry: Telemetry) -> None:
    echo = spawn("echo", LAB_OTLP_ENDPOINT=store.url, LAB_LOG_LEVEL="DEBUG")
    wait_registered(etcd, echo)
    assert call(echo, "ok-debug").status_code == 200
    (found,) = wait_until(lambda: stored(telemetry, "ok-debug"), "the success's record", 20,
                          interval=0.2)
    assert (found["level"], found["attributes"]["status"]) == ("debug", 200)
    assert on_stdout(echo, "ok-debug") == [], "stdout would cost more than the request"


def test_log_level_is_applied_and_a_bad_one_stops_the_service(
        etcd, spawn: Callable[..., Service]) -> None:
    quiet = spawn("echo", LAB_LOG_LEVEL="warning")
    wait_registered(etcd, quiet)
    quiet.admin_put({"error_rate": 1.0}).raise_for_status()
    assert call(quiet, "failed-2").status_code == 500
    wait_until(lambda: any(line.get("request_id") == "failed-2" for line in quiet.logs()),
               "the failure on stdout", 5)
    assert {line["level"] for line in quiet.logs()} == {"warning"}, quiet.messages()

    bad = spawn("echo", LAB_SLOT="2", LAB_LOG_LEVEL="loud")
    assert bad.process.wait(timeout=10) == 2
    assert ("LAB_LOG_LEVEL must be one of debug, info, warning, error, got 'loud'"
            in bad.log_path.read_text())


def test_an_unsampled_rpc_that_fails_is_kept_and_a_successful_one_is_not(
        etcd, spawn: Callable[..., Service], store: StoreProcess, telemetry: Telemetry) -> None:
    routeguide = spawn("routeguide", LAB_PORT="15061", LAB_METRICS_PORT="19110",
                       LAB_OTLP_ENDPOINT=store.url)
    wait_registered(etcd, routeguide)
    feature = FEATURES[0]
    where = pb.Point(latitude=feature.latitude, longitude=feature.longitude)
    with grpc.insecure_channel(f"{routeguide.host}:15061") as channel:
        stub = pb_grpc.RouteGuideStub(channel)

        def get(sampled: bool) -> tuple[str, str]:
            header, trace_id, caller = traceparent(sampled)
            try:
                stub.GetFeature(where, timeout=5, metadata=[("traceparent", header)])
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            return trace_id, caller

        ok, _ = get(sampled=False)
        routeguide.admin_put({"error_rate": 1}).raise_for_status()
        failed, caller = get(sampled=False)
        barrier, _ = get(sampled=True)  # exported after the others, by the same process
        httpx.delete(routeguide.admin_url, headers=routeguide.admin_headers,
                     timeout=2).raise_for_status()
    wait_until(lambda: not spans_of(telemetry, barrier).empty, "routeguide's barrier span", 20,
               interval=0.2)

    kept = spans_of(telemetry, failed)
    assert list(zip(kept["service"], kept["kind"], kept["status"], strict=True)) == [
        ("routeguide", "SERVER", "ERROR")], kept[["service", "name", "kind", "status"]]
    assert kept["parent_span_id"].tolist() == [caller], "under the caller's span"
    assert kept["name"].iat[0] == "/routeguide.RouteGuide/GetFeature"
    assert spans_of(telemetry, ok).empty, "a successful unsampled RPC leaves no span"
