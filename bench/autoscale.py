"""The autoscaler's reaction: how long a load step takes to be met, and its end to be undone.

echo starts at 2 instances, autoscaled between 2 and --max at --target rps per instance with
a --window s stabilization window (interval 2 s). A step of --rps requests per second through
the gateway for --seconds: the time from its start until echo runs the instances the rate
asks for (ceil(rps / target), at most --max), then from its end until echo is back at 2.
Prometheus's 10 s rate window and 2 s rule evaluation are part of the reaction. Prints
medians and ranges over --runs runs, with the machine's core count.
Run: .venv/bin/python bench/autoscale.py [--rps 100] [--target 20] [--max 5] [--window 6]
"""

from __future__ import annotations

import argparse
import math
import time

import psutil
from common import print_medians, running_lab
from results import record_all

from labkit.lab import Lab
from labkit.waits import wait_for


def one_run(lab: Lab, args: argparse.Namespace) -> dict[str, float]:
    lab.heal()
    lab.scale("echo", 2)
    time.sleep(12)  # the previous run's rate leaves the 10 s window
    wanted = min(math.ceil(args.rps / args.target), args.max)
    scaler = lab.autoscale("echo", min=2, max=args.max, target_rps_per_instance=args.target,
                           stabilization=args.window, interval=2)
    try:
        started = time.monotonic()
        traffic = lab.start_load("http://echo.localhost/", rps=args.rps, seconds=args.seconds)
        wait_for(lambda: len(lab.instances("echo")) >= wanted,
                 what=f"echo to reach {wanted} instances", timeout=args.seconds)
        up_s = time.monotonic() - started
        frame = traffic.result()
        ended = time.monotonic()
        wait_for(lambda: len(lab.instances("echo")) == 2, what="echo to be back at 2",
                 timeout=args.window + 40)
        down_s = time.monotonic() - ended
    finally:
        decisions = scaler.stop()
    return {"step to scaled up s": up_s, "end to scaled down s": down_s,
            "scale actions": float((decisions["action"] != "none").sum()),
            "failed %": 100 * float((frame["status"] != 200).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--target", type=float, default=20.0)
    parser.add_argument("--max", type=int, default=5)
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with running_lab() as lab:
        runs = [one_run(lab, args) for _ in range(args.runs)]
        lab.heal()

    print(f"autoscaler: a step of {args.rps:g} rps for {args.seconds:g} s, target "
          f"{args.target:g} rps per instance, 2..{args.max} instances, {args.window:g} s window; "
          f"median [min-max] of {args.runs} runs, {psutil.cpu_count()} cores")
    print_medians(runs)
    record_all("autoscale", runs)


if __name__ == "__main__":
    main()
