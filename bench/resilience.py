"""The resilience notebooks' key figures, for tracking: errors during a crash with and
without gateway retries (notebook 05), and p99 latency with one slow instance under round
robin vs power of two choices (notebook 08).
Run: .venv/bin/python bench/resilience.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import running_lab
from results import header, record

from labkit.lab import Lab

URL = "http://echo.localhost/"


def crash_error_rate(lab: Lab, retries: bool) -> float:
    lab.heal()
    lab.policies.clear("echo")
    if retries:
        lab.policies.retry("echo", attempts=4, initial_interval="10ms")
    traffic = lab.start_load(URL, rps=100, seconds=8)
    time.sleep(2)
    lab.kill("echo", 2, restart=False)
    frame = traffic.result()
    return float((frame["status"] != 200).mean())


def p99_with_a_slow_instance(lab: Lab, strategy: str) -> float:
    lab.heal()
    lab.policies.clear("echo")
    lab.fault("echo", 1, latency="2s")
    lab.policies.strategy("echo", strategy)
    frame = lab.load(URL, rps=250, seconds=8)
    return float(frame["latency_ms"].quantile(0.99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with running_lab() as lab:
        lab.scale("echo", 3)
        errors = {r: [crash_error_rate(lab, r) for _ in range(args.runs)] for r in (False, True)}
        p99 = {s: [p99_with_a_slow_instance(lab, s) for _ in range(args.runs)]
               for s in ("wrr", "p2c")}
        lab.policies.clear("echo")

    print(header(f"resilience figures, echo x3 through the gateway, {args.runs} runs"))
    print("crash of 1 of 3 instances under 100 rps for 8 s, client errors:")
    for retries, rates in errors.items():
        label = "retries (4 attempts)" if retries else "no retries"
        print(f"  {label:>22}: median {statistics.median(rates):.2%}, max {max(rates):.2%}")
        record("resilience", f"crash of 1 of 3, {label}: errors", [100 * r for r in rates], "%")
    print("one instance 2 s slower, 250 rps for 8 s, p99 latency:")
    for strategy, values in p99.items():
        print(f"  {strategy:>22}: median {statistics.median(values):.0f} ms, "
              f"max {max(values):.0f} ms")
        record("resilience", f"one instance 2 s slower, {strategy}: p99", values, "ms")
    record("resilience", "p99 ratio p2c / wrr (same run)",
           [p / w for p, w in zip(p99["p2c"], p99["wrr"], strict=True)], "x")


if __name__ == "__main__":
    main()
