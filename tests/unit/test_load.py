"""run_load against a tiny real HTTP server on 127.0.8.1."""

from __future__ import annotations

import _thread
import asyncio
import itertools
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from labkit.errors import LabError
from labkit.load import COLUMNS, MAX_RPS, run_load, share_by_instance, summarize

pytestmark = pytest.mark.timeout(20)

HOST = "127.0.8.1"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), _Handler)
        self.instances = itertools.cycle(["blue-1", "blue-2"])
        self.lock = threading.Lock()
        self.clients: set[str] = set()
        self.hosts: set[str] = set()
        self.traceparents: list[str | None] = []
        self.connections = 0
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def handle_error(self, request, client_address) -> None:
        # A client that timed out closed its socket; the late write failing is expected.
        pass


class _Handler(BaseHTTPRequestHandler):
    """`/` answers at once; `/slow?ms=N` after N ms; `/fail` with 500;
    `/once-per-connection` answers a connection's first request and closes it at the next;
    `/never` closes every connection without answering; `/slow-first` answers a connection's
    first request after 300 ms, the others at once; `/close` answers with Connection: close;
    `/unframed` answers a body that ends with the connection (no length, no chunks)."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, delayed ACKs add ~40 ms to each.
    disable_nagle_algorithm = True
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self.answered = getattr(self, "answered", 0) + 1  # one handler per connection
        with self.server.lock:
            self.server.requests += 1
        if url.path == "/never" or (url.path == "/once-per-connection" and self.answered > 1):
            self.close_connection = True  # read the request, close without answering
            return
        with self.server.lock:
            self.server.clients.add(self.client_address[0])
            self.server.hosts.add(self.headers.get("Host", ""))
            self.server.traceparents.append(self.headers.get("traceparent"))
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
            instance = next(self.server.instances)
        try:
            if url.path == "/slow":
                time.sleep(int(parse_qs(url.query)["ms"][0]) / 1000)
            if url.path == "/slow-first" and self.answered == 1:
                time.sleep(0.3)
            self.send_response(500 if url.path == "/fail" else 200)
            self.send_header("X-Instance", instance)
            self.send_header("X-Version", "v1")
            if url.path == "/close":
                self.send_header("Connection", "close")
            if url.path == "/unframed":
                self.close_connection = True
            else:
                self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _url(srv: _Server, path: str = "/") -> str:
    return f"http://{HOST}:{srv.server_address[1]}{path}"


def test_open_loop_sends_rate_times_duration(server):
    df = run_load(_url(server), rps=100, seconds=1.0, progress=False)

    assert list(df.columns) == COLUMNS
    assert 95 <= len(df) <= 100, f"expected ~100 requests, got {len(df)}"
    assert (df["status"] == 200).all() and (df["error"] == "").all()
    assert set(df["instance"]) == {"blue-1", "blue-2"} and set(df["version"]) == {"v1"}
    # Requests are due on a fixed grid, and leave close to when they are due.
    assert df["scheduled"].diff().dropna().round(6).eq(0.01).all()
    assert (df["start"] - df["scheduled"]).median() < 0.02
    assert (df["latency_from_scheduled_ms"] >= df["latency_ms"] - 1e-6).all()
    assert df["client"].eq("").all()
    assert df.attrs["mode"] == "open" and df.attrs["rps"] == 100
    assert df.attrs["seconds"] == 1.0 and df.attrs["url"] == _url(server)
    assert abs(df.attrs["started_at"] - time.time()) < 10


def test_closed_loop_keeps_exactly_n_requests_in_flight(server):
    df = run_load(_url(server, "/slow?ms=50"), concurrency=2, seconds=0.5, progress=False)

    assert 10 <= len(df) <= 22, f"2 users x 0.5 s / 50 ms should make ~20 requests, got {len(df)}"
    assert server.max_in_flight == 2
    assert (df["scheduled"] == df["start"]).all()
    assert df.attrs["mode"] == "closed" and df.attrs["concurrency"] == 2
    assert df.attrs["rps"] is None


def test_source_address_and_host_header_reach_the_server(server):
    df = run_load(
        _url(server), rps=20, seconds=0.25, host="echo.localhost",
        source_address="127.0.8.66", progress=False,
    )

    assert server.clients == {"127.0.8.66"}
    assert server.hosts == {"echo.localhost"}
    assert df["client"].eq("127.0.8.66").all() and df.attrs["host"] == "echo.localhost"


def test_every_connection_of_a_busy_run_has_the_source_address(server):
    run_load(_url(server, "/slow?ms=50"), concurrency=4, seconds=0.3,
             source_address="127.0.8.67", progress=False)

    assert server.connections == 4, "four users at once need four connections"
    assert server.clients == {"127.0.8.67"}
    assert server.hosts == {f"{HOST}:{server.server_address[1]}"}, "Host defaults to the URL's"


def test_slow_responses_become_timeouts_and_the_run_stays_bounded(server):
    began = time.monotonic()
    df = run_load(_url(server, "/slow?ms=1500"), rps=10, seconds=0.3, timeout=0.2, progress=False)

    assert time.monotonic() - began < 0.3 + 0.2 + 1.0
    assert len(df) == 3
    assert (df["error"] == "timeout").all() and (df["status"] == 0).all()
    assert df["latency_ms"].between(150, 600).all()
    assert (df["instance"] == "").all()


def test_a_timed_out_connection_is_never_reused(server):
    # Each connection answers its first request late: a request that took over a timed-out
    # connection would get that late answer as its own.
    df = run_load(_url(server, "/slow-first"), rps=20, seconds=0.5, timeout=0.1,
                  progress=False)

    assert len(df) == 10
    assert (df["error"] == "timeout").all(), df["error"].value_counts()
    assert server.connections == 10


def test_refused_connection_is_a_connect_error():
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    df = run_load(f"http://{HOST}:{port}/", rps=20, seconds=0.2, progress=False)

    assert len(df) == 4
    assert (df["error"] == "connect").all() and (df["status"] == 0).all()
    assert (df["instance"] == "").all() and df["latency_ms"].lt(1000).all()


def test_a_request_on_a_connection_the_server_closed_is_sent_again_once(server):
    df = run_load(_url(server, "/once-per-connection"), rps=20, seconds=0.5, progress=False)

    # each request after the first met a kept-alive connection closed without an answer
    assert len(df) == 10 and (df["status"] == 200).all(), df["error"].value_counts()
    assert server.requests == 19 and server.connections == 10


def test_a_new_connection_closed_without_an_answer_is_a_read_error_not_resent(server):
    df = run_load(_url(server, "/never"), rps=20, seconds=0.25, progress=False)

    assert len(df) == 5 and (df["error"] == "read").all(), df["error"].value_counts()
    assert server.requests == 5, "only a kept-alive connection's request is sent again"


@pytest.mark.parametrize("path", ["/close", "/unframed"])
def test_answers_that_close_the_connection_are_whole_answers(server, path):
    df = run_load(_url(server, path), rps=20, seconds=0.25, progress=False)

    assert len(df) == 5 and (df["status"] == 200).all(), df["error"].value_counts()
    assert set(df["instance"]) == {"blue-1", "blue-2"}
    assert server.connections == 5


TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-0([01])")


def test_trace_sample_sends_a_fresh_traceparent_sampled_with_that_probability(server):
    run_load(_url(server), rps=500, seconds=2.0, trace_sample=0.3, progress=False)

    matches = [TRACEPARENT.fullmatch(value or "") for value in server.traceparents]
    assert len(matches) == 1000 and all(matches), server.traceparents[:3]
    trace_ids = {m.group(1) for m in matches}
    assert len(trace_ids) == 1000 and "0" * 32 not in trace_ids, "a new trace per request"
    assert len({trace_id[:16] for trace_id in trace_ids}) == 1000, "random in all 128 bits"
    assert len({m.group(2) for m in matches}) == 1000
    sampled = sum(m.group(3) == "1" for m in matches)
    # binomial(1000, 0.3): sd 14.5, so 4 sd either side fails by chance once in 15,000 runs
    assert abs(sampled - 300) <= 58, f"{sampled} of 1000 sampled, expected about 300"


@pytest.mark.parametrize(("trace_sample", "flags"), [(None, {None}), (0, {"00"}), (1, {"01"})])
def test_trace_sample_none_zero_and_one(server, trace_sample, flags):
    run_load(_url(server), rps=40, seconds=0.5, trace_sample=trace_sample, progress=False)

    assert {value and value[-2:] for value in server.traceparents} == flags


@pytest.fixture
def tls_server(tmp_path, monkeypatch):
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=lab", "-addext", f"subjectAltName=IP:{HOST}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    srv = _Server()
    srv.socket = context.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, cert
    srv.shutdown()
    srv.server_close()


def test_https_with_a_trusted_certificate(tls_server, monkeypatch):
    srv, cert = tls_server
    url = f"https://{HOST}:{srv.server_address[1]}/"
    untrusted = run_load(url, rps=20, seconds=0.1, progress=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trusted like by labkit's other clients
    df = run_load(url, rps=20, seconds=0.25, progress=False)

    assert (untrusted["error"] == "connect").all(), "a certificate nobody trusts is refused"
    assert len(df) == 5 and (df["status"] == 200).all(), df["error"].value_counts()


def test_status_codes_are_recorded(server):
    failed = run_load(_url(server, "/fail"), rps=20, seconds=0.2, progress=False)

    assert (failed["status"] == 500).all() and (failed["error"] == "").all()


def test_works_inside_a_running_event_loop(server):
    async def notebook_cell() -> pd.DataFrame:
        # Jupyter runs cells inside an event loop; a sync call must still work there.
        return run_load(_url(server), rps=20, seconds=0.25, progress=False)

    df = asyncio.run(notebook_cell())
    assert len(df) == 5 and (df["status"] == 200).all()


def test_ctrl_c_stops_the_run_within_the_request_timeout(server):
    # Ctrl-C as in a plain Python session or a kernel: an earlier test in this worker may
    # have left another SIGINT handler behind (a library's), which would swallow the press
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.3, _thread.interrupt_main).start()
        began = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            run_load(_url(server, "/slow?ms=100"), rps=20, seconds=10, timeout=1,
                     progress=False)
    finally:
        signal.signal(signal.SIGINT, previous)

    assert time.monotonic() - began < 0.3 + 1.5  # in-flight requests end within 1 s
    assert not any(t.name == "labkit-load" for t in threading.enumerate()), "run outlived Ctrl-C"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of rps="),
        ({"rps": 10, "concurrency": 2}, "exactly one of rps="),
        ({"rps": 0}, rf"rps must be a number > 0 and <= {MAX_RPS}, got 0"),
        ({"rps": MAX_RPS + 1}, rf"<= {MAX_RPS}"),
        ({"rps": float("nan")}, rf"<= {MAX_RPS}"),
        ({"concurrency": 0}, r"concurrency must be an integer from 1 to 256, got 0"),
        ({"concurrency": 1.5}, r"from 1 to 256"),
        ({"rps": 10, "seconds": 0}, r"seconds must be > 0 and <= 600"),
        ({"rps": 10, "seconds": 601}, r"<= 600"),
        ({"rps": 10, "timeout": -1}, r"timeout must be > 0"),
        ({"rps": 10, "source_address": "10.0.0.1"}, r"IPv4 address in 127\.0\.0\.0/8"),
        ({"rps": 10, "source_address": "not-an-ip"}, r"got 'not-an-ip'"),
        ({"rps": 10, "trace_sample": 1.5}, r"trace_sample must be a probability from 0 to 1"),
        ({"rps": 10, "trace_sample": -0.1}, r"got -0\.1"),
        ({"rps": 10, "trace_sample": "0.5"}, r"got '0\.5'"),
        ({"rps": 10, "trace_sample": True}, r"got True"),
    ],
)
def test_bad_arguments_name_the_valid_range(kwargs, message):
    with pytest.raises(LabError, match=message):
        run_load("http://127.0.8.1:9/", **kwargs)


def test_url_must_be_absolute_http_or_grpc():
    with pytest.raises(LabError, match="http://, https:// or grpc://"):
        run_load("echo.localhost/", rps=10)
    with pytest.raises(LabError, match="source_address applies to HTTP load only"):
        run_load("grpc://127.0.8.1:9", rps=10, source_address="127.0.0.66")
    with pytest.raises(LabError, match="trace_sample applies to HTTP load only"):
        run_load("grpc://127.0.8.1:9", rps=10, trace_sample=0.5)


def test_progress_goes_to_stderr_only_when_asked(server, capsys):
    run_load(_url(server), rps=20, seconds=0.3, progress=True)
    shown = capsys.readouterr().err
    run_load(_url(server), rps=20, seconds=0.3)  # auto: silent when stderr is not a terminal
    assert "load 20 rps" in shown and "6 done" in shown
    assert capsys.readouterr().err == ""


def _frame(rows: list[tuple[str, int, str, float]]) -> pd.DataFrame:
    instance, status, error, latency = zip(*rows, strict=True)
    return pd.DataFrame({
        "instance": instance, "status": status, "error": error, "latency_ms": latency,
    })


def test_summarize_and_share_by_instance():
    df = _frame(
        [("a", 200, "", 10.0)] * 6
        + [("b", 200, "", 20.0)] * 2
        + [("b", 500, "", 30.0)] * 1
        + [("", 0, "timeout", 1000.0)] * 1
    )

    summary = summarize(df)
    assert list(summary.index) == ["(none)", "a", "b"]
    assert summary["requests"].tolist() == [1, 6, 3]
    assert summary["share"].tolist() == pytest.approx([0.1, 0.6, 0.3])
    assert summary["errors"].tolist() == [1, 0, 1]
    assert summary.loc["a", "p50_ms"] == 10.0 and summary.loc["b", "p50_ms"] == 20.0
    assert summary.loc["b", "p99_ms"] == pytest.approx(29.8)

    shares = share_by_instance(df)
    assert shares.index.tolist() == ["a", "b"]
    assert shares.tolist() == pytest.approx([0.75, 0.25])


def test_share_by_instance_of_a_real_run_is_even(server):
    shares = share_by_instance(run_load(_url(server), rps=50, seconds=0.4, progress=False))
    assert shares.tolist() == pytest.approx([0.5, 0.5], abs=0.06)
