"""Notebook 08's exercises: round robin vs power of two choices."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exercises import Exercise, Findings, share
from .measure import ECHO_URL, close_to, instances_with, policy_settings, registered

if TYPE_CHECKING:
    from ...lab import Lab

SLOW = "2s"  # the notebook's latency for a slow instance
LOW_RPS = 20
RPS = 100  # the notebook's rate


def p2c_with_slow(lab: Lab, found: Findings, slow_count: int) -> set[str]:
    """echo's slow instances, noting in `found` unless p2c is on and `slow_count` of the
    instances are slow."""
    strategy = (policy_settings(lab, "echo", "strategy") or {}).get("strategy", "wrr")
    found.require(strategy == "p2c",
                  f"echo's strategy is {strategy}: lab.policies.strategy('echo', 'p2c')")
    slow = instances_with(lab, "echo", "latency")
    found.require(len(slow) == slow_count < len(registered(lab, "echo")),
                  f"{slow_count} of echo's instances should be slow, slow now: "
                  f"{', '.join(sorted(slow)) or 'none'}: lab.fault('echo', n, latency='{SLOW}')")
    return slow


def low_rate(lab: Lab, slow_share: object) -> Findings:
    said = share(slow_share, "slow_share")
    found = Findings()
    slow = p2c_with_slow(lab, found, 1)
    if found.missing:
        return found
    frame = lab.load(ECHO_URL, rps=LOW_RPS, seconds=5)
    measured = float(frame["instance"].isin(slow).mean())
    latency = frame["latency_ms"]
    found.seen.append(f"at {LOW_RPS} rps p2c sent the slow instance {measured:.1%} of "
                      f"{len(frame)} requests; p95 {latency.quantile(0.95):.0f} ms, p99 "
                      f"{latency.quantile(0.99):.0f} ms")
    found.require(close_to(said, measured, 0.02, 0.5),
                  f"you said {said:.1%}: measure it with lab.load('{ECHO_URL}', rps={LOW_RPS}, "
                  "seconds=5) and the share of rows from the slow instance")
    return found


def two_slow(lab: Lab, fast_share: object) -> Findings:
    said = share(fast_share, "fast_share")
    found = Findings()
    slow = p2c_with_slow(lab, found, 2)
    if found.missing:
        return found
    frame = lab.load(ECHO_URL, rps=RPS, seconds=4)
    shares = frame["instance"].value_counts(normalize=True)
    measured = float(shares.drop(list(slow), errors="ignore").sum())
    found.seen.append(f"at {RPS} rps p2c sent " + ", ".join(
        f"{name} {part:.0%}" for name, part in shares.sort_index().items())
        + f" of {len(frame)} requests ({', '.join(sorted(slow))} slow)")
    found.require(close_to(said, measured, 0.12),
                  f"you predicted {said:.0%} for the fast instance: which pairs of instances "
                  "can p2c draw, and which of each pair wins?")
    return found


EXERCISES = (
    Exercise(
        "08.1", f"p2c at {LOW_RPS} rps with echo-1 slow: which share does echo-1 get?",
        "A few percent, several times more than at 100 rps: echo-1 gets a request whenever it "
        "has nothing in flight, about one per slow latency (2 s) whatever the rate, so the "
        "lower the rate, the larger its share. p95 stays fast, but p99 becomes the slow "
        "latency: p2c only steers by requests in flight, which a low rate keeps near zero.",
        low_rate, ("slow_share",)),
    Exercise(
        "08.2", "p2c with two of three instances slow: the fast instance's share?",
        "About two thirds: p2c draws two instances at random; the fast one wins every pair it "
        "is in (2 of the 3 pairs), and the pair of two slow ones sends a third of the traffic "
        "to a slow instance whatever it does. p2c avoids the worst of two, not the worst of "
        "all: with most of the fleet slow, p95 is the slow latency.",
        two_slow, ("fast_share",)),
    Exercise(
        "08.3", "hrw or leasttime for a cache-heavy service?",
        "hrw (highest random weight, a consistent hash of the client IP): each client keeps "
        "reaching the same instance, whose cache holds its data, and adding or removing an "
        "instance moves only that instance's share of clients. leasttime picks by measured "
        "response time, which spreads one client's requests over every cache; it suits "
        "uneven instances, not cache locality."),
)
