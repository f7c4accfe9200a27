"""Gateway overhead: one echo instance called directly vs through Traefik, in one run.

Closed loop (N concurrent users) for the same duration each way; prints
throughput and latency percentiles, and gateway/direct ratios. The client is
Python, so absolute figures include its own overhead; the ratios are the point.
Run: .venv/bin/python bench/gateway_overhead.py [--seconds S] [--concurrency N]
"""

from __future__ import annotations

import argparse

import psutil

from labkit.lab import Lab


def measure(lab: Lab, url: str, seconds: float, concurrency: int) -> dict:
    lab.load(url, concurrency=concurrency, seconds=1.0)  # warm up connections
    frame = lab.load(url, concurrency=concurrency, seconds=seconds)
    ok = frame[frame["status"] == 200]
    return {
        "requests/s": len(ok) / seconds,
        "p50 ms": ok["latency_ms"].quantile(0.50),
        "p99 ms": ok["latency_ms"].quantile(0.99),
        "errors": int((frame["status"] != 200).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    lab = Lab(progress=lambda _msg: None)
    started_here = not lab.backend.is_up()
    lab.up()
    try:
        lab.scale("echo", 1)
        direct_url = f"http://{lab.instances('echo').iloc[0]['address']}/"
        direct = measure(lab, direct_url, args.seconds, args.concurrency)
        gateway = measure(lab, "http://echo.localhost/", args.seconds, args.concurrency)
    finally:
        if started_here:
            lab.down()
        else:
            lab.scale("echo", 3)

    print(f"echo x1, closed loop, {args.concurrency} users, {args.seconds:g} s each, "
          f"{psutil.cpu_count()} cores")
    print(f"{'':>10}  {'requests/s':>10}  {'p50 ms':>7}  {'p99 ms':>7}  errors")
    for name, row in (("direct", direct), ("gateway", gateway)):
        print(f"{name:>10}  {row['requests/s']:>10.0f}  {row['p50 ms']:>7.2f}  "
              f"{row['p99 ms']:>7.2f}  {row['errors']:>6}")
    print(f"{'ratio':>10}  {gateway['requests/s'] / direct['requests/s']:>10.2f}  "
          f"{gateway['p50 ms'] / direct['p50 ms']:>7.2f}  "
          f"{gateway['p99 ms'] / direct['p99 ms']:>7.2f}   (gateway / direct)")


if __name__ == "__main__":
    main()
