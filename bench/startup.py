"""Cold start of the local stack: time from `up` to all-healthy, and the stack's memory.

Targets (issue 2): <= 10 s and <= 800 MB; aim for 5 s and 500 MB.
Run: .venv/bin/python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import psutil
from results import header, record

from labkit.lab import Lab


def stack_memory_mb(lab: Lab) -> tuple[float, float, int]:
    """(RSS, USS) in MB summed over supervisord and every process under it, and the count."""
    root = psutil.Process(lab.backend.supervisor.pid())
    procs = [root, *root.children(recursive=True)]
    rss = sum(p.memory_info().rss for p in procs) / 2**20
    uss = sum(p.memory_full_info().uss for p in procs) / 2**20
    return rss, uss, len(procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    lab = Lab(progress=lambda _msg: None)
    lab.down()
    times, rows = [], []
    for run in range(1, args.runs + 1):
        started = time.monotonic()
        lab.up()
        elapsed = time.monotonic() - started
        time.sleep(2)  # let every process finish its start-up allocations
        rss, uss, count = stack_memory_mb(lab)
        lab.down()
        times.append(elapsed)
        rows.append((run, elapsed, rss, uss, count))

    print(header("cold start of the local stack"))
    print(f"{'run':>3}  {'up→healthy s':>12}  {'RSS MB':>7}  {'USS MB':>7}  processes")
    for run, elapsed, rss, uss, count in rows:
        print(f"{run:>3}  {elapsed:>12.2f}  {rss:>7.0f}  {uss:>7.0f}  {count:>9}")
    print(f"median up→healthy: {statistics.median(times):.2f} s (target ≤ 10 s, aim 5 s)")
    print(f"median RSS: {statistics.median(r[2] for r in rows):.0f} MB (target ≤ 800 MB, aim 500)")
    record("startup", "up -> healthy", times, "s", "target <= 10 s")
    record("startup", "stack RSS", [r[2] for r in rows], "MB", "target <= 800 MB")


if __name__ == "__main__":
    main()
