"""Deployments: how fast a weight change reaches the gateway; a rolling upgrade's pace and cost.

1. Weight change: echo v1 x3 with v2 x1 beside it, all traffic on v1. A client sends requests
   back to back through the gateway while the split moves to 100% v2: prints the time
   `shift` takes (one etcd transaction + reading it back from Traefik's API), and from the
   start of the call to the first request v2 served and to the last one v1 served.
2. Rolling upgrade of echo x4 (v1 -> v2, then back, batch 1, surge 1) under 100 rps: time per
   instance and failed requests (target: 0).
Run: .venv/bin/python bench/deploy.py [--runs N] [--rps R]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import httpx
from common import running_lab
from results import header, record

from labkit.lab import Lab
from labkit.topology import infra


def sequential_client(stop: threading.Event, seen: list[tuple[float, str]]) -> None:
    with httpx.Client(base_url=infra().gateway.url, headers={"Host": "echo.localhost"}) as client:
        while not stop.is_set():
            sent = time.monotonic()
            seen.append((sent, client.get("/").headers.get("x-version", "")))


def weight_change(lab: Lab) -> dict:
    lab.shift("echo", {"v1": 100})
    seen: list[tuple[float, str]] = []
    stop = threading.Event()
    client = threading.Thread(target=sequential_client, args=(stop, seen))
    client.start()
    time.sleep(0.5)
    began = time.monotonic()
    lab.shift("echo", {"v2": 100})
    returned = time.monotonic()
    time.sleep(0.5)
    stop.set()
    client.join()
    after = [(t - began, v) for t, v in seen if t >= began]
    return {
        "shift call ms": (returned - began) * 1000,
        "first v2 ms": min(t for t, v in after if v == "v2") * 1000,
        "last v1 ms": max((t for t, v in after if v == "v1"), default=0.0) * 1000,
    }


def rollout(lab: Lab, version: str, rps: float) -> dict:
    traffic = lab.start_load("http://echo.localhost/", rps=rps, seconds=14)
    time.sleep(1)
    began = time.monotonic()
    report = lab.rollout("echo", version, batch=1, surge=1)
    took = time.monotonic() - began
    df = traffic.result()
    return {"per instance s": took / len(report), "failed": int((df["status"] != 200).sum()),
            "requests": len(df)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rps", type=float, default=100.0)
    args = parser.parse_args()

    with running_lab() as lab:
        lab.heal()
        lab.deploy("echo", "v2", 1)
        shifts = [weight_change(lab) for _ in range(args.runs)]
        lab.heal()
        lab.scale("echo", 4)
        upgrades = [rollout(lab, "v2" if run % 2 == 0 else "v1", args.rps)
                    for run in range(args.runs)]
        lab.heal()

    print(header(f"weight change v1 100% -> v2 100% at the gateway, {args.runs} runs "
                 "(from the start of lab.shift)"))
    print(f"{'':>16}  {'median':>8}  {'max':>8}")
    for key in shifts[0]:
        values = [s[key] for s in shifts]
        print(f"{key:>16}  {statistics.median(values):>8.1f}  {max(values):>8.1f}")
        record("deploy", f"weight change: {key}", values, "")
    per_instance = [u["per instance s"] for u in upgrades]
    print(f"rolling upgrade of echo x4 (batch 1, surge 1) under {args.rps:g} rps, "
          f"{args.runs} runs (v1 -> v2 -> v1 ...)")
    print(f"  time per instance: median {statistics.median(per_instance):.2f} s, "
          f"max {max(per_instance):.2f} s")
    print(f"  failed requests: {sum(u['failed'] for u in upgrades)} of "
          f"{sum(u['requests'] for u in upgrades)} (target 0)")
    record("deploy", "rolling upgrade: time per instance", per_instance, "s")
    record("deploy", "rolling upgrade: failed requests", [u["failed"] for u in upgrades], "",
           "target 0")


if __name__ == "__main__":
    main()
