"""Each infrastructure component SIGKILLed under load (supervisord restarts it), and etcd
away for longer than the lease TTL: what clients lose, how fast the lab recovers, and that
routes, policies, splits, registrations, metrics and stored telemetry are intact.

Bounds: about twice the worst of bench/chaos.py's runs on 2 cores shared with four other
labs (its medians and ranges are in the README).
"""

from __future__ import annotations

import pytest

from labkit.chaos import Outcome, Snapshot, strike
from labkit.lab import Lab
from labkit.topology import LEASE_TTL_SECONDS

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

# seconds from SIGKILL to answering its health check again (supervisord restarts it);
# bench/chaos.py, 6 runs: at most 4.04 (etcd), 3.57 (promsd), 2.98, 3.33, 3.13 (traefik)
HEALTHY_S = {"etcd": 7.0, "promsd": 7.0, "prometheus": 6.0, "telemetry": 7.0, "traefik": 6.0}
ROUTED_S = 8.0  # every instance registered and routed by its current pid (measured <= 4.12)
GATEWAY_GAP_S = 6.0  # Traefik killed: the last failed request ends by then (measured <= 3.24)
# etcd paused for longer than the lease TTL, from SIGCONT: every instance routed again
# (measured 0.42-1.25 s) and the last failed request over (0.20-0.95 s)
PAUSE_ROUTED_S = 2.5
PAUSE_FAILING_S = 2.0


def intact(lab: Lab, before: Snapshot) -> None:
    """Everything `before` saw is still there, and Prometheus and the store collect again."""
    before.wait_intact(lab)
    Snapshot.take(lab)  # a new request's logs reach the store


def describe(outcome: Outcome) -> str:
    failed = outcome.load[outcome.load["status"] != 200]
    return (f"{outcome.component} {outcome.fault}: {outcome.failed} of {outcome.requests} "
            f"failed, last ending {outcome.failed_until_s} s after; healthy after "
            f"{outcome.healthy_s:.2f} s, routed after {outcome.routed_s:.2f} s\n"
            f"{failed[['start', 'end', 'status', 'error']].head(10)}")


@pytest.mark.parametrize("component", ["etcd", "promsd", "prometheus", "telemetry"])
def test_a_killed_component_costs_no_request_and_loses_nothing(chaos_lab: Lab, component):
    before = Snapshot.take(chaos_lab)
    outcome = strike(chaos_lab, component)
    print(describe(outcome))
    assert outcome.failed == 0, describe(outcome)
    assert outcome.healthy_s < HEALTHY_S[component], describe(outcome)
    assert outcome.routed_s < ROUTED_S, describe(outcome)
    intact(chaos_lab, before)


def test_a_killed_gateway_is_back_within_seconds_with_everything_intact(chaos_lab: Lab):
    before = Snapshot.take(chaos_lab)
    outcome = strike(chaos_lab, "traefik")
    print(describe(outcome))
    assert outcome.failed > 0, "every request crosses the gateway: its death must show"
    assert outcome.failed_until_s is not None and outcome.failed_until_s < GATEWAY_GAP_S, (
        describe(outcome))
    assert outcome.healthy_s < HEALTHY_S["traefik"], describe(outcome)
    assert outcome.routed_s < ROUTED_S, describe(outcome)
    intact(chaos_lab, before)


def test_etcd_away_longer_than_the_lease_ttl(chaos_lab: Lab):
    """Paused for TTL + 2 s: the gateway serves from its last configuration meanwhile; when
    etcd returns, the expired leases go, every instance registers again and is routed."""
    pause_s = LEASE_TTL_SECONDS + 2
    before = Snapshot.take(chaos_lab)
    outcome = strike(chaos_lab, "etcd", pause_s=pause_s)
    print(describe(outcome))
    load = outcome.load
    during = load[(load["start"] >= outcome.fault_at - pause_s) & (load["end"] < outcome.fault_at)]
    assert len(during) > 0 and (during["status"] == 200).all(), describe(outcome)
    # then the expired leases go at once: the gateway has no server until each instance
    # registers again
    assert outcome.routed_s < PAUSE_ROUTED_S, describe(outcome)
    assert outcome.failed_until_s is None or outcome.failed_until_s < PAUSE_FAILING_S, (
        describe(outcome))
    intact(chaos_lab, before)
