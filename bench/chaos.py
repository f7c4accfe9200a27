"""Infrastructure chaos: each component of the lab broken under load, and how it recovers.

Under 50 rps through the gateway to echo (3 x v1 and 1 x v2 at 10%, a rate-limit policy:
labkit.chaos.dress), each infrastructure component is SIGKILLed in turn (supervisord restarts
it), etcd is paused (SIGSTOP) for longer than the lease TTL, and supervisord itself is
SIGKILLed (then `up` supervises the lab again). Per strike: requests failed, when the last
failed request ended, when the component answered its health check again (for supervisord:
when `up` returned) and when every instance was registered and routed again, all in seconds
from the fault (for the pause: from SIGCONT). Medians and [ranges] over --runs runs.
Run: .venv/bin/python bench/chaos.py [--runs N] [--rps R]
"""

from __future__ import annotations

import argparse
import statistics

from common import median_range, running_lab
from results import header, record

from labkit.chaos import SUPERVISOR, Outcome, dress, strike, undress
from labkit.topology import LEASE_TTL_SECONDS

PAUSE_S = LEASE_TTL_SECONDS + 2
ADOPT_S = 45.0  # load after supervisord's death: covers `up` supervising the lab again
STRIKES = [*((c, None) for c in ("etcd", "promsd", "prometheus", "telemetry", "traefik")),
           ("etcd", PAUSE_S), (SUPERVISOR, None)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rps", type=float, default=50.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    results: dict[tuple[str, float | None], list[Outcome]] = {}
    with running_lab() as lab:
        dress(lab)
        try:
            for _ in range(args.runs):
                for component, pause in STRIKES:
                    after = ADOPT_S if component == SUPERVISOR else 4.0
                    results.setdefault((component, pause), []).append(
                        strike(lab, component, pause_s=pause, rps=args.rps, after_s=after))
        finally:
            undress(lab)

    print(header(f"chaos under {args.rps:g} rps through the gateway, median [range] of "
                 f"{args.runs} runs; seconds from the fault (pause: from SIGCONT)"))
    print(f"{'component':>11} {'fault':>9}  {'failed':>13}  {'last failure s':>19}  "
          f"{'healthy s':>19}  {'routed s':>19}")
    for (component, _), runs in results.items():
        failed = [float(r.failed) for r in runs]
        last = [r.failed_until_s or 0.0 for r in runs]
        print(f"{component:>11} {runs[0].fault:>9}  "
              f"{statistics.median(failed):4.0f} [{min(failed):.0f}-{max(failed):.0f}]  "
              f"{median_range(last):>19}  {median_range([r.healthy_s for r in runs]):>19}  "
              f"{median_range([r.routed_s for r in runs]):>19}")
        record("chaos", f"{component} {runs[0].fault}: failed requests", failed, "")
        record("chaos", f"{component} {runs[0].fault}: routed again", [r.routed_s for r in runs],
               "s")


if __name__ == "__main__":
    main()
