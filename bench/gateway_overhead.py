"""Gateway overhead: one echo instance called directly vs through Traefik, in one run.

Two views, each direct and through the gateway, with gateway/direct ratios per run:
  - light load: labkit's open-loop client at a modest rate, so latency is
    not queueing; the difference is the extra hop;
  - saturation: wrk (closed loop, C connections) for the highest throughput,
    since a Python client saturates before echo or Traefik do. Without wrk
    on PATH (`apt-get install wrk`), this part is skipped and says so.
Each figure is a median [min-max] over --runs runs, at the lab's telemetry setting.
Run: .venv/bin/python bench/gateway_overhead.py [--runs N] [--seconds S] [--rps R] [--connections C]
"""

from __future__ import annotations

import argparse
import shutil

from common import print_medians, running_lab, wrk
from results import header, record_all

from labkit.lab import Lab
from labkit.topology import infra

GATEWAY_URL = "http://echo.localhost/"
# what make bench's closing table shows (bench/summary.py)
HEADLINE = ("light gateway/direct: p50 ms", "wrk direct: requests/s",
            "wrk gateway: requests/s", "wrk gateway/direct: requests/s")


def light_load(lab: Lab, url: str, rps: float, seconds: float) -> dict[str, float]:
    frame = lab.load(url, rps=rps, seconds=seconds)
    ok = frame[frame["status"] == 200]
    return {
        "p50 ms": ok["latency_ms"].quantile(0.50),
        "p99 ms": ok["latency_ms"].quantile(0.99),
        "errors": float((frame["status"] != 200).sum()),
    }


def one_run(lab: Lab, direct_url: str, args: argparse.Namespace,
            saturate: bool) -> dict[str, float]:
    """Every figure of one run, and the gateway/direct ratios measured in it."""
    figures: dict[str, float] = {}
    views = {"light": (light_load(lab, direct_url, args.rps, args.seconds),
                       light_load(lab, GATEWAY_URL, args.rps, args.seconds))}
    if saturate:
        views["wrk"] = (wrk(direct_url, None, args.seconds, args.connections),
                        wrk(f"{infra().gateway.url}/", "echo.localhost", args.seconds,
                            args.connections))
    for view, (direct, gateway) in views.items():
        for name in direct:
            figures[f"{view} direct: {name}"] = direct[name]
            figures[f"{view} gateway: {name}"] = gateway[name]
        for name in direct:
            if name != "errors":
                figures[f"{view} gateway/direct: {name}"] = gateway[name] / direct[name]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")

    saturate = shutil.which("wrk") is not None
    with running_lab() as lab:
        lab.scale("echo", 1)
        direct_url = f"http://{lab.instances('echo').iloc[0]['address']}/"
        runs = [one_run(lab, direct_url, args, saturate) for _ in range(args.runs)]
        title = header(f"gateway overhead, one echo instance: light = {args.rps:g} rps open "
                       f"loop for {args.seconds:g} s (labkit client), wrk = {args.connections} "
                       f"connections for {args.seconds:g} s; median [min-max] of {args.runs} "
                       "runs")
        lab.scale("echo", 3)

    print(title)
    print_medians(runs)
    if not saturate:
        print("saturation: skipped, wrk is not installed (apt-get install wrk)")
    record_all("gateway overhead", [{k: run[k] for k in HEADLINE if k in run} for run in runs])


if __name__ == "__main__":
    main()
