"""Failover: how fast the gateway routes around a broken instance, and what clients see.

Under constant load through the gateway (echo x3), one instance is broken in
three ways: crash (SIGKILL, not restarted), hang (SIGSTOP), unready (alive,
failing readiness). For each, prints the time from the fault to the last
request routed to that instance (for crash and hang those requests fail, so:
the last failed request; for unready: the last one it served), the client
errors in that window, and when the registry dropped the instance.
Targets (issue 3): crash <= 3 s, hang <= 3 s, unready <= 2 s.
Run: .venv/bin/python bench/failover.py [--rps R] [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import running_lab
from results import header, record

from labkit.lab import Lab

FAULT_AT = 2.0  # seconds into the load
AFTER = 6.0  # seconds of load after the fault
CLIENT_TIMEOUT = 2.0


def break_instance(lab: Lab, kind: str) -> None:
    if kind == "crash":
        lab.kill("echo", 1, restart=False)
    elif kind == "hang":
        lab.pause("echo", 1)
    else:
        lab.fault("echo", 1, unready=True)


def one_run(lab: Lab, kind: str, rps: float) -> dict:
    lab.heal()
    watch = lab.registry.watch("echo")
    traffic = lab.start_load("http://echo.localhost/", rps=rps, seconds=FAULT_AT + AFTER,
                             timeout=CLIENT_TIMEOUT)
    time.sleep(FAULT_AT)
    fault_at = time.time()
    break_instance(lab, kind)
    df = traffic.result()
    events = watch.stop()
    fault_t = fault_at - df.attrs["started_at"]
    after = df[df["start"] >= fault_t]
    if kind == "unready":
        routed = after[after["instance"] == "echo-1"]
    else:
        routed = after[after["status"] != 200]
    down = events[(events["instance"] == "echo-1") & (events["event"] == "down")]
    return {
        "last routed s": (routed["start"].max() - fault_t) if len(routed) else 0.0,
        "errors": int((after["status"] != 200).sum()),
        "registry drop s": (down["time"].iloc[0] - fault_at) if len(down) else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    results = {}
    with running_lab() as lab:
        lab.scale("echo", 3)
        for kind in ("crash", "hang", "unready"):
            results[kind] = [one_run(lab, kind, args.rps) for _ in range(args.runs)]

    print(header(f"failover under {args.rps:g} rps through the gateway, echo x3, "
                 f"median of {args.runs} runs"))
    print(f"{'fault':>8}  {'last routed s':>13}  {'(max)':>6}  {'errors':>6}  "
          f"{'registry drop s':>15}  target")
    targets = {"crash": 3.0, "hang": 3.0, "unready": 2.0}
    for kind, runs in results.items():
        routed = [r["last routed s"] for r in runs]
        print(f"{kind:>8}  {statistics.median(routed):>13.2f}  {max(routed):>6.2f}  "
              f"{statistics.median(r['errors'] for r in runs):>6.0f}  "
              f"{statistics.median(r['registry drop s'] for r in runs):>15.2f}  "
              f"<= {targets[kind]:g} s")
        record("failover", f"{kind}: last request routed to it", routed, "s",
               f"target <= {targets[kind]:g} s")


if __name__ == "__main__":
    main()
