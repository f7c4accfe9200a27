"""The load generator's ceiling: the highest open-loop rate labkit's client sustains here,
and wrk's throughput against the same target for comparison.

Sustained means: the client sent 99% of the requests within 10 ms of their due
time and fewer than 1% failed. Target: echo x3 through the gateway.
Run: .venv/bin/python bench/loadgen.py [--seconds S]
"""

from __future__ import annotations

import argparse
import shutil

import psutil
from common import running_lab
from gateway_overhead import wrk

from labkit.topology import infra

RATES = (100, 200, 400, 600, 800, 1000)
MAX_LATE_MS = 10.0


def sustained(frame, rps: float, seconds: float) -> dict:
    late_ms = (frame["start"] - frame["scheduled"]) * 1000
    return {
        "rps": rps,
        "sent/s": len(frame) / seconds,
        "late p99 ms": late_ms.quantile(0.99),
        "errors %": 100 * (frame["status"] != 200).mean(),
        "p50 ms": frame["latency_ms"].median(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    rows = []
    with running_lab() as lab:
        lab.scale("echo", 3)
        for rps in RATES:
            frame = lab.load("http://echo.localhost/", rps=rps, seconds=args.seconds)
            rows.append(sustained(frame, rps, args.seconds))
        wrk_row = None
        if shutil.which("wrk"):
            wrk_row = wrk(f"{infra().gateway.url}/", "echo.localhost", args.seconds, 16)

    print(f"labkit open loop through the gateway to echo x3, {args.seconds:g} s per rate, "
          f"{psutil.cpu_count()} cores")
    print(f"{'rps':>6}  {'sent/s':>7}  {'late p99 ms':>11}  {'errors %':>8}  {'p50 ms':>7}  ok")
    best = 0
    for row in rows:
        ok = row["late p99 ms"] <= MAX_LATE_MS and row["errors %"] < 1
        best = row["rps"] if ok else best
        print(f"{row['rps']:>6}  {row['sent/s']:>7.0f}  {row['late p99 ms']:>11.1f}  "
              f"{row['errors %']:>8.2f}  {row['p50 ms']:>7.2f}  {'yes' if ok else 'no'}")
    print(f"max sustained open-loop rate: {best} rps")
    if wrk_row:
        print(f"wrk (16 connections, closed loop): {wrk_row['requests/s']:.0f} requests/s; "
              f"labkit / wrk = {best / wrk_row['requests/s']:.2f}")
    else:
        print("wrk: not installed (apt-get install wrk), no comparison")


if __name__ == "__main__":
    main()
