"""A memory leak meets its limit: how fast the instance is stopped, restarted and routed again.

Under constant load through the gateway (echo x3, each limited to --memory, retries on),
echo-1 leaks --leak MiB/s. Per run: the time from the leak's start to the kernel's kill (the
old pid gone), from the kill to the new instance routed (registered with its new pid and in
Traefik's view), and the requests that failed meanwhile. Prints medians and ranges over
--runs runs, with the limits' mechanism (labkit.limits) and the machine's core count.
Run: .venv/bin/python bench/limits.py [--rps R] [--runs N] [--memory 128M] [--leak 50]
"""

from __future__ import annotations

import argparse
import time

import psutil
from common import print_medians, running_lab
from results import record_all

from labkit import limits
from labkit.lab import Lab
from labkit.topology import service
from labkit.waits import wait_for

LEAK_AT = 2.0  # seconds into the load
LOAD_S = 12.0
ECHO = service("echo")


def one_run(lab: Lab, rps: float, memory: str, leak: float) -> dict[str, float]:
    lab.heal()
    lab.scale("echo", 3)
    lab.policies.retry("echo", attempts=3)
    lab.limits("echo", memory=memory)
    old_pid = lab.backend.instance_pid(ECHO, 1)
    traffic = lab.start_load("http://echo.localhost/", rps=rps, seconds=LOAD_S)
    time.sleep(LEAK_AT)
    leak_at = time.monotonic()
    lab.fault("echo", 1, leak_mb_per_s=leak)
    wait_for(lambda: not psutil.pid_exists(old_pid), what="the kernel to stop echo-1",
             timeout=30, interval=0.02)
    killed_at = time.monotonic()
    wait_for(lambda: lab.backend.instance_pid(ECHO, 1) not in (0, old_pid),
             what="supervisord to restart echo-1", timeout=30, interval=0.02)
    lab.backend.wait_routed(ECHO, [1])
    routed_at = time.monotonic()
    df = traffic.result()
    lab.policies.clear("echo")
    return {"leak to kill s": killed_at - leak_at, "kill to routed s": routed_at - killed_at,
            "failed %": 100 * float((df["status"] != 200).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--memory", default="128M")
    parser.add_argument("--leak", type=float, default=50.0)
    args = parser.parse_args()

    with running_lab() as lab:
        runs = [one_run(lab, args.rps, args.memory, args.leak) for _ in range(args.runs)]
        lab.heal()

    print(f"a leak of {args.leak:g} MiB/s against a {args.memory} limit ({limits.mechanism()}), "
          f"{args.rps:g} rps through the gateway with retries, echo x3; median [min-max] of "
          f"{args.runs} runs, {psutil.cpu_count()} cores")
    print_medians(runs)
    record_all("limits", runs)


if __name__ == "__main__":
    main()
