"""HTTP load generator: one row per request, as a DataFrame.

Two ways to send load:

- open loop (`rps=`): request i is due at i/rps seconds, whatever happened to
  the earlier ones. An overloaded server shows up as latency and errors, not as
  a client that quietly slows down.
- closed loop (`concurrency=`): N users, each sending its next request when the
  previous one finished, like a fixed pool of callers.

Latency is measured twice. `latency_ms` runs from when the request was actually
sent; `latency_from_scheduled_ms` runs from when it was due. If the client falls
behind its schedule, the first hides that wait and the second keeps it: use the
second to avoid coordinated omission.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import ipaddress
import sys
import threading
import time
from collections.abc import Callable

import grpc
import httpx
import pandas as pd

from . import jupyter
from .errors import LabError, LabTimeout
from .http1 import HttpSender

# What one client sustains on a 2-core machine (bench/loadgen.py: 10,000 rps with a p99
# lateness of 1.2 ms against a trivial local server in 3 of 3 runs; 15,000 rps fell behind)
MAX_RPS = 10000
MAX_CONCURRENCY = 256
MAX_SECONDS = 600
MAX_TIMEOUT = 60
# Enough sockets for MAX_RPS at 0.1 s latency (or 1,000 rps at 1 s): under overload the
# client must not become the bottleneck that hides the server's slowness.
MAX_CONNECTIONS = 1024
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")

COLUMNS = [
    "scheduled", "start", "end", "latency_ms", "latency_from_scheduled_ms",
    "status", "error", "instance", "version", "client",
]
_RAW_COLUMNS = ["scheduled", "start", "end", "status", "error", "instance", "version"]


def run_load(
    url: str,
    *,
    rps: float | None = None,
    concurrency: int | None = None,
    seconds: float = 5.0,
    host: str | None = None,
    source_address: str | None = None,
    timeout: float = 5.0,
    trace_sample: float | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Send load to `url` for `seconds`; return one row per request.

    Give exactly one of `rps` (open loop) or `concurrency` (closed loop).
    `host` sets the Host header (gateway routing), `source_address` the
    client's IP in 127.0.0.0/8, `timeout` the limit for each whole request.
    `trace_sample` (0 to 1) gives every request a W3C `traceparent` header with
    a fresh trace id, marked sampled with that probability: the sampling
    decision is made at the client, and the services keep a caller's decision.
    `progress=None` shows a live line only in an interactive Jupyter session
    or a terminal, never under papermill or CI.

    Columns: scheduled, start, end (s since the run started), latency_ms,
    latency_from_scheduled_ms, status (0 = no response), error ("" or
    timeout / connect / read; for gRPC the status name), instance and version
    (X-Instance, X-Version headers), client. `df.attrs` keeps the run's
    settings: url, mode ("open" or "closed"), rps, concurrency, seconds, host,
    started_at (epoch seconds).
    """
    _validate(url, rps, concurrency, seconds, source_address, timeout, trace_sample)
    run = _Run(url, rps, concurrency, seconds, host, source_address, timeout, trace_sample)
    # A full garbage collection walks every object in the process, ~50 ms in a notebook's:
    # frozen, the objects that exist before the run are not walked during it.
    gc.freeze()
    try:
        _run_in_thread(run, _progress_writer(progress))
    finally:
        gc.unfreeze()
    df = _frame(run.rows, source_address or "")
    df.attrs = {
        "url": url,
        "mode": "open" if rps is not None else "closed",
        "rps": rps,
        "concurrency": concurrency,
        "seconds": seconds,
        "host": host,
        "started_at": run.epoch0,
    }
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per instance: requests, share of all requests, errors (no 2xx/3xx), p50/p99 latency."""
    groups = df.assign(instance=_instance_labels(df), failed=~_ok(df)).groupby("instance")
    out = groups.agg(
        requests=("status", "size"),
        errors=("failed", "sum"),
        p50_ms=("latency_ms", "median"),
        p99_ms=("latency_ms", lambda s: s.quantile(0.99)),
    )
    out.insert(1, "share", out["requests"] / max(len(df), 1))
    return out


def share_by_instance(df: pd.DataFrame) -> pd.Series:
    """Fraction of the successful (2xx/3xx) responses that each instance served."""
    ok = _ok(df)
    shares = _instance_labels(df)[ok].value_counts(normalize=True).sort_index()
    return shares.rename("share").rename_axis("instance")


def _ok(df: pd.DataFrame) -> pd.Series:
    return (df["status"] >= 200) & (df["status"] < 400)


def _instance_labels(df: pd.DataFrame) -> pd.Series:
    # A response without X-Instance (e.g. the gateway's own 502) still needs a visible label.
    return df["instance"].replace("", "(none)")


def check(url: str, **options: object) -> None:
    """Refuse (LabError) what `run_load(url, **options)` would refuse, before anything is sent:
    an unknown option, or a bad value for one."""
    signature = inspect.signature(run_load)
    unknown = sorted(set(options) - set(signature.parameters))
    if unknown:
        valid = ", ".join(p for p in signature.parameters if p != "url")
        raise LabError(f"unknown load option {', '.join(unknown)}; valid options: {valid}")
    bound = signature.bind(url, **options)
    bound.apply_defaults()
    _validate(*(bound.arguments[p] for p in inspect.signature(_validate).parameters))


def _validate(
    url: str,
    rps: float | None,
    concurrency: int | None,
    seconds: float,
    source_address: str | None,
    timeout: float,
    trace_sample: float | None,
) -> None:
    if (rps is None) == (concurrency is None):
        raise LabError(
            "give exactly one of rps= (open loop, requests per second) "
            "or concurrency= (closed loop, number of users)"
        )
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise LabError(f"url must be an http://, https:// or grpc:// URL, got {url!r}") from exc
    if parsed.scheme not in ("http", "https", "grpc") or not parsed.host:
        raise LabError(
            f"url must be an http://, https:// or grpc:// URL with a host, got {url!r}"
        )
    for name, value in (("source_address", source_address), ("trace_sample", trace_sample)):
        if parsed.scheme == "grpc" and value is not None:
            raise LabError(f"{name} applies to HTTP load only, not to grpc:// targets")
    if rps is not None and not (_is_number(rps) and 0 < rps <= MAX_RPS):
        raise LabError(f"rps must be a number > 0 and <= {MAX_RPS}, got {rps!r}")
    if concurrency is not None and not (
        isinstance(concurrency, int) and not isinstance(concurrency, bool)
        and 1 <= concurrency <= MAX_CONCURRENCY
    ):
        raise LabError(
            f"concurrency must be an integer from 1 to {MAX_CONCURRENCY}, got {concurrency!r}"
        )
    if not (_is_number(seconds) and 0 < seconds <= MAX_SECONDS):
        raise LabError(f"seconds must be > 0 and <= {MAX_SECONDS}, got {seconds!r}")
    if not (_is_number(timeout) and 0 < timeout <= MAX_TIMEOUT):
        raise LabError(f"timeout must be > 0 and <= {MAX_TIMEOUT} seconds, got {timeout!r}")
    if trace_sample is not None and not (_is_number(trace_sample) and 0 <= trace_sample <= 1):
        raise LabError(
            f"trace_sample must be a probability from 0 to 1 (or None: no traceparent), "
            f"got {trace_sample!r}"
        )
    if source_address is not None:
        try:
            inside = ipaddress.IPv4Address(source_address) in LOOPBACK
        except ValueError:
            inside = False
        if not inside:
            raise LabError(
                f"source_address must be an IPv4 address in {LOOPBACK} "
                f"(e.g. '127.0.0.66'), got {source_address!r}"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Run:
    """One load run; lives on its own event loop in a worker thread."""

    def __init__(
        self,
        url: str,
        rps: float | None,
        concurrency: int | None,
        seconds: float,
        host: str | None,
        source_address: str | None,
        timeout: float,
        trace_sample: float | None,
    ) -> None:
        self.url, self.rps, self.concurrency, self.seconds = url, rps, concurrency, seconds
        self.host, self.source_address, self.timeout = host, source_address, timeout
        self.trace_sample = trace_sample
        self.rows: list[tuple] = []
        self.sent = 0
        self.errors = 0
        self.stop = threading.Event()
        self.t0 = 0.0
        self.epoch0 = time.time()  # wall clock at t0: aligns rows with other event logs

    def now(self) -> float:
        return time.perf_counter() - self.t0

    async def main(self) -> None:
        if self.url.startswith("grpc://"):
            self.sender: HttpSender | _GrpcSender = _GrpcSender(self.url, self.host,
                                                                self.timeout)
        else:
            self.sender = HttpSender(
                self.url, host=self.host, source_address=self.source_address,
                timeout=self.timeout, trace_sample=self.trace_sample,
                max_connections=MAX_CONNECTIONS,
            )
        try:
            self.t0, self.epoch0 = time.perf_counter(), time.time()
            if self.rps is not None:
                await self._open_loop(self.rps)
            else:
                await asyncio.gather(*(self._user() for _ in range(self.concurrency or 0)))
        finally:
            await self.sender.aclose()

    async def _open_loop(self, rps: float) -> None:
        in_flight: set[asyncio.Task] = set()
        i = 0
        # Due times come from the index, not from the previous sleep, so lateness never drifts.
        while (due := i / rps) < self.seconds and not self.stop.is_set():
            delay = due - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._send(scheduled=due))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            i += 1
        if in_flight:
            # Every request ends within its own timeout; the margin covers loop jitter.
            _, stragglers = await asyncio.wait(in_flight, timeout=self.timeout + 1.0)
            for task in stragglers:
                task.cancel()
            await asyncio.gather(*stragglers, return_exceptions=True)

    async def _user(self) -> None:
        while self.now() < self.seconds and not self.stop.is_set():
            await self._send(scheduled=None)

    async def _send(self, scheduled: float | None) -> None:
        start = self.now()
        self.sent += 1
        status, error, instance, version = await self.sender.send()
        self.errors += bool(error)
        self.rows.append((
            start if scheduled is None else scheduled, start, self.now(), status, error,
            instance, version,
        ))


class _GrpcSender:
    """RouteGuide.GetFeature over one HTTP/2 channel; the gateway (or the target) balances.

    gRPC has no HTTP status to report: a row's status is 200 for OK and 0 otherwise, and
    its error is the gRPC status name in lower case (e.g. "unavailable").
    """

    def __init__(self, url: str, authority: str | None, timeout: float):
        from labstack import routeguide_pb2, routeguide_pb2_grpc  # generated at set-up

        parsed = httpx.URL(url)
        options = [("grpc.default_authority", authority)] if authority else []
        self.channel = grpc.aio.insecure_channel(f"{parsed.host}:{parsed.port}", options=options)
        self.stub = routeguide_pb2_grpc.RouteGuideStub(self.channel)
        self.point = routeguide_pb2.Point(latitude=409146138, longitude=-746188906)
        self.timeout = timeout

    async def send(self) -> tuple[int, str, str, str]:
        call = self.stub.GetFeature(self.point, timeout=self.timeout)
        try:
            await call
            status, error = 200, ""
        except grpc.aio.AioRpcError as exc:
            status, error = 0, exc.code().name.lower()
        except asyncio.CancelledError:
            status, error = 0, "timeout"
        try:  # an injected failure still names the instance that failed
            metadata = dict(await call.initial_metadata() or ())
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            metadata = {}
        return status, error, metadata.get("x-instance", ""), metadata.get("x-version", "")

    async def aclose(self) -> None:
        await self.channel.close()


def _run_in_thread(run: _Run, show: Callable[[str, bool], None] | None) -> None:
    """Run on a private event loop, so this works where a loop is already running (Jupyter)."""
    failure: list[BaseException] = []
    # An Event, not Thread.join: on Python 3.11 a join interrupted by Ctrl-C makes later
    # joins return at once, and the run would outlive the interrupted cell.
    finished = threading.Event()

    def target() -> None:
        try:
            asyncio.run(run.main())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            failure.append(exc)
        finally:
            finished.set()

    threading.Thread(target=target, name="labkit-load", daemon=True).start()
    limit = run.seconds + run.timeout + 10.0
    deadline = time.monotonic() + limit
    try:
        while not finished.wait(0.25) and time.monotonic() < deadline:
            if show:
                show(_progress_line(run), False)
    except KeyboardInterrupt:
        # Stop scheduling; in-flight requests end within their timeout.
        run.stop.set()
        finished.wait(run.timeout + 2.0)
        raise
    if not finished.is_set():
        run.stop.set()
        raise LabTimeout(
            f"load run did not finish within {limit:g} s "
            f"({run.sent} requests sent, {len(run.rows)} finished)\n"
            "Hint: the machine may be too busy; try a lower rps or concurrency."
        )
    if failure:
        raise failure[0]
    if show:
        show(_progress_line(run, final=True), True)


def _progress_line(run: _Run, final: bool = False) -> str:
    elapsed = min(run.now(), run.seconds) if run.t0 else 0.0
    filled = round(20 * elapsed / run.seconds)
    mode = f"{run.rps:g} rps" if run.rps is not None else f"{run.concurrency} users"
    line = (
        f"load {mode} [{'#' * filled}{'.' * (20 - filled)}] {elapsed:4.1f}/{run.seconds:g} s  "
        f"{len(run.rows)} done, {run.errors} without response"
    )
    return line if final else f"{line}, {run.sent - len(run.rows)} in flight"


def _progress_writer(progress: bool | None) -> Callable[[str, bool], None] | None:
    """Where the live progress line goes: a Jupyter display, stderr, or nowhere."""
    if progress is None:
        progress = jupyter.interactive()
    if not progress:
        return None
    if jupyter.in_kernel():
        from IPython.display import display

        handle = display({"text/plain": ""}, raw=True, display_id=True)
        return lambda line, final: handle.update({"text/plain": line}, raw=True)

    def to_stderr(line: str, final: bool) -> None:
        sys.stderr.write(f"\r{line}\033[K" + ("\n" if final else ""))
        sys.stderr.flush()

    return to_stderr


def _frame(rows: list[tuple], client: str) -> pd.DataFrame:
    df = pd.DataFrame.from_records(rows, columns=_RAW_COLUMNS).astype(
        {"scheduled": float, "start": float, "end": float, "status": int}
    )
    df["latency_ms"] = (df["end"] - df["start"]) * 1000.0
    df["latency_from_scheduled_ms"] = (df["end"] - df["scheduled"]) * 1000.0
    df["client"] = client
    return df[COLUMNS].sort_values(["scheduled", "start"], kind="stable").reset_index(drop=True)
