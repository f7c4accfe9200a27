"""Gateway overhead: one echo instance called directly vs through Traefik, in one run.

Two views, each direct and through the gateway, printed with gateway/direct ratios:
  - light load: labkit's open-loop client at a modest rate, so latency is
    not queueing; the difference is the extra hop;
  - saturation: wrk (closed loop, C connections) for the highest throughput,
    since a Python client saturates before echo or Traefik do. Without wrk
    on PATH (`apt-get install wrk`), this part is skipped and says so.
Run: .venv/bin/python bench/gateway_overhead.py [--seconds S] [--rps R] [--connections C]
"""

from __future__ import annotations

import argparse
import shutil

import psutil
from common import running_lab, wrk

from labkit.lab import Lab
from labkit.topology import infra


def light_load(lab: Lab, url: str, rps: float, seconds: float) -> dict:
    frame = lab.load(url, rps=rps, seconds=seconds)
    ok = frame[frame["status"] == 200]
    return {
        "p50 ms": ok["latency_ms"].quantile(0.50),
        "p99 ms": ok["latency_ms"].quantile(0.99),
        "errors": int((frame["status"] != 200).sum()),
    }


def print_table(title: str, direct: dict, gateway: dict) -> None:
    columns = list(direct)
    print(title)
    print(f"{'':>10}" + "".join(f"{c:>12}" for c in columns))
    for name, row in (("direct", direct), ("gateway", gateway)):
        print(f"{name:>10}" + "".join(f"{row[c]:>12.2f}" if isinstance(row[c], float)
                                      else f"{row[c]:>12}" for c in columns))
    ratios = [f"{gateway[c] / direct[c]:>12.2f}" if c != "errors" else f"{'':>12}"
              for c in columns]
    print(f"{'ratio':>10}" + "".join(ratios) + "   (gateway / direct)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rps", type=float, default=100.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()

    with running_lab() as lab:
        lab.scale("echo", 1)
        direct_url = f"http://{lab.instances('echo').iloc[0]['address']}/"
        light = [light_load(lab, url, args.rps, args.seconds)
                 for url in (direct_url, "http://echo.localhost/")]
        heavy = None
        if shutil.which("wrk"):
            heavy = [wrk(direct_url, None, args.seconds, args.connections),
                     wrk(f"{infra().gateway.url}/", "echo.localhost", args.seconds,
                         args.connections)]
        lab.scale("echo", 3)

    print(f"gateway overhead, one echo instance, {psutil.cpu_count()} cores\n")
    print_table(f"light load: {args.rps:g} rps open loop for {args.seconds:g} s (labkit client)",
                *light)
    if heavy:
        print_table(f"saturation: wrk, {args.connections} connections, {args.seconds:g} s",
                    *heavy)
    else:
        print("saturation: skipped, wrk is not installed (apt-get install wrk)")


if __name__ == "__main__":
    main()
