"""The load generator's ceiling: the highest open-loop rate labkit's client sustains,
against wrk's capacity on the same target, measured in the same run.

Sustained means: 99% of the requests left within 10 ms of their due time and fewer
than 1% failed, over the whole run. For each target, wrk (closed loop) measures the
capacity first; then labkit runs at fractions of it (at most labkit's MAX_RPS). Client
CPU per request is this process's CPU time over the run at the top rate (the load
thread, the progress poll and the frame). Beside each labkit run, a process that only
sleeps 1 ms at a time measures how late the OS wakes a thread that needs almost no CPU:
the floor under any client's lateness on this machine at that load.
Targets: echo x3 through the gateway; a trivial local server (asyncio + httptools, one
process, started here) whose capacity is far beyond any Python client's.
Run: .venv/bin/python bench/loadgen.py [--seconds S] [--runs N] [--connections C]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

import httptools
import psutil
from common import print_medians, running_lab
from gateway_overhead import wrk

from labkit.lab import Lab
from labkit.load import MAX_RPS
from labkit.topology import infra

FRACTIONS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
MAX_LATE_MS = 10.0
HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Instance: hello-1\r\n\r\nhello"


def attempt(lab: Lab, url: str, host: str | None, rps: float, seconds: float) -> dict:
    sleeper = subprocess.Popen([sys.executable, __file__, "--sleep", str(seconds)],
                               stdout=subprocess.PIPE, text=True)
    assert sleeper.stdout is not None
    sleeper.stdout.readline()  # started
    cpu = time.process_time()
    frame = lab.load(url, rps=rps, seconds=seconds, host=host)
    cpu = time.process_time() - cpu
    late_ms = (frame["start"] - frame["scheduled"]) * 1000
    errors = (frame["status"] != 200).mean()
    return {
        "rps": rps,
        "sustained": late_ms.quantile(0.99) <= MAX_LATE_MS and errors < 0.01,
        "late p99 ms": late_ms.quantile(0.99),
        "sleeper late p99 ms": float(sleeper.communicate(timeout=seconds + 10)[0]),
        "errors %": 100 * errors,
        "cpu us/request": 1e6 * cpu / max(len(frame), 1),
    }


def ceiling(lab: Lab, url: str, host: str | None, seconds: float, connections: int) -> dict:
    """wrk's capacity, then labkit at each fraction of it, on one target."""
    capacity = wrk(url, host, seconds, connections)["requests/s"]
    print(f"    wrk: {capacity:.0f} requests/s", flush=True)
    rows = []
    for fraction in FRACTIONS:
        rows.append(attempt(lab, url, host, round(min(capacity, MAX_RPS) * fraction), seconds))
        row = rows[-1]
        print(f"    {row['rps']:>6.0f} rps: late p99 {row['late p99 ms']:6.1f} ms "
              f"(sleeper {row['sleeper late p99 ms']:5.1f} ms), errors {row['errors %']:5.2f} %, "
              f"{row['cpu us/request']:4.0f} us/request"
              f"{'' if row['sustained'] else '  (not sustained)'}", flush=True)
    best = max((row["rps"] for row in rows if row["sustained"]), default=0.0)
    top = rows[-1]
    return {
        "labkit max sustained rps": best,
        "wrk capacity rps": capacity,
        "labkit / wrk": best / capacity,
        "top rate rps": top["rps"],
        "late p99 ms at the top rate": top["late p99 ms"],
        "sleeper late p99 ms then": top["sleeper late p99 ms"],
        "cpu us/request then": top["cpu us/request"],
    }


@contextlib.contextmanager
def hello_server() -> Iterator[str]:
    """The trivial server, in a process of its own; yields its URL."""
    server = subprocess.Popen([sys.executable, __file__, "--serve-hello"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield f"http://127.0.0.1:{int(server.stdout.readline())}/"
    finally:
        server.kill()
        server.wait(5)


class _Hello(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self) -> None:
        self.transport.write(HELLO)


def sleep_and_report(seconds: float) -> None:
    """Sleep 1 ms at a time for `seconds`; print the p99 of how late each wake-up came."""
    print("started", flush=True)
    late, start = [], time.perf_counter()
    for i in range(1, round(seconds * 1000) + 1):
        due = start + i / 1000
        time.sleep(max(0.0, due - time.perf_counter()))
        late.append((time.perf_counter() - due) * 1000)
    print(statistics.quantiles(late, n=100)[98])


async def serve_hello() -> None:
    server = await asyncio.get_running_loop().create_server(_Hello, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16, help="wrk's connections")
    parser.add_argument("--serve-hello", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sleep", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_hello:
        asyncio.run(serve_hello())
        return
    if args.sleep:
        sleep_and_report(args.sleep)
        return

    gateway: list[dict[str, float]] = []
    local: list[dict[str, float]] = []
    with running_lab() as lab, hello_server() as hello_url:
        lab.scale("echo", 3)
        for run in range(1, args.runs + 1):
            print(f"run {run}: echo x3 through the gateway", flush=True)
            gateway.append(ceiling(lab, f"{infra().gateway.url}/", "echo.localhost",
                                   args.seconds, args.connections))
            print(f"run {run}: trivial local server", flush=True)
            local.append(ceiling(lab, hello_url, None, args.seconds, args.connections))

    print(f"\nlabkit's open loop (sustained: p99 lateness <= {MAX_LATE_MS:g} ms, < 1% errors) "
          f"vs wrk (closed loop, {args.connections} connections), {args.seconds:g} s per rate, "
          f"at most MAX_RPS {MAX_RPS}, {args.runs} runs, {psutil.cpu_count()} cores, "
          f"telemetry: the lab's defaults "
          f"(every request traced and logged)")
    print("echo x3 through the gateway: median [min-max]")
    print_medians(gateway)
    print("trivial local server (asyncio + httptools): median [min-max]")
    print_medians(local)


if __name__ == "__main__":
    main()
