"""Notebook 07's exercises: rate limiting and bulkheads."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ..exercises import Exercise, Findings, number, share
from .measure import ECHO_URL, close_to, every_instance_with, policy_settings

if TYPE_CHECKING:
    from ...lab import Lab

POLITE = "127.0.0.10"  # the notebook's polite client
AT_ONCE = 5  # requests a bursty client sends together, once a second
POLITE_USERS = 10
SECONDS = 3


def held_in_service(frame: pd.DataFrame, seconds: float) -> float:
    """Average number of the client's requests inside the service (Little's law)."""
    return float(frame[frame["status"] == 200]["latency_ms"].sum() / 1000 / seconds)


def bursty_client(lab: Lab, rejected: object) -> Findings:
    said = share(rejected, "rejected")
    found = Findings()
    limit = policy_settings(lab, "echo", "rate-limit")
    burst = (limit or {}).get("burst")
    found.require(burst == "1", f"echo's rate limit has burst {burst or 'unset'}: "
                                "lab.policies.rate_limit('echo', average=20, burst=1)")
    if found.missing or limit is None:
        return found
    found.require(int(limit["average"]) >= 2 * AT_ONCE,
                  f"an average of {limit['average']} a {limit['period']} is not well above "
                  f"{AT_ONCE} a second: keep the notebook's average=20")
    if found.missing:
        return found
    # five open-loop clients at 1 rps, started together: five requests at once every second
    clients = [lab.start_load(ECHO_URL, rps=1, seconds=SECONDS) for _ in range(AT_ONCE)]
    frame = pd.concat([client.result() for client in clients], ignore_index=True)
    measured = float((frame["status"] == 429).mean())
    found.seen.append(f"with average={limit['average']} and burst=1, {AT_ONCE} requests at "
                      f"once every second for {SECONDS} s: {measured:.0%} of {len(frame)} got "
                      "429")
    # five clients' "at once" spreads over tens of ms on a busy machine, and the bucket refills
    # a token every 50 ms: measured 60-80%. The bucket's own arithmetic is an answer too
    found.require(close_to(said, measured, 0.1) or close_to(said, 1 - 1 / AT_ONCE, 0.05),
                  f"you said {said:.0%} are rejected: send {AT_ONCE} requests together (e.g. "
                  f"{AT_ONCE} lab.start_load('{ECHO_URL}', rps=1, seconds={SECONDS}) at once) "
                  "and count the 429s, or work out how many tokens the bucket holds")
    return found


def many_polite_users(lab: Lab, in_service: object) -> Findings:
    said = number(in_service, "in_service", 0, 100,
                  "the polite client's average number of requests inside echo")
    found = Findings()
    amount = (policy_settings(lab, "echo", "in-flight") or {}).get("amount")
    found.require(amount is not None and int(amount) < POLITE_USERS,
                  f"echo's bulkhead allows {amount or 'unlimited'} in flight: "
                  "lab.policies.in_flight('echo', amount=5, per='ip')")
    every_instance_with(found, lab, "echo", "latency", "lab.fault('echo', n, latency='300ms')")
    if found.missing:
        return found
    frame = lab.load(ECHO_URL, concurrency=POLITE_USERS, seconds=SECONDS,
                     source_address=POLITE)
    held = held_in_service(frame, SECONDS)
    found.seen.append(f"the polite client with {POLITE_USERS} users and a bulkhead of {amount}: "
                      f"{held:.1f} requests in echo on average; "
                      f"{(frame['status'] == 429).mean():.0%} of {len(frame)} refused with 429")
    found.require(close_to(said, held, 1.0, 0.25),
                  f"you said {said:g} in the service: measure the polite client with "
                  f"{POLITE_USERS} users as the notebook measures held_in_service")
    return found


EXERCISES = (
    Exercise(
        "07.1", "a rate limit keyed on X-Api-Key: what stops a client from changing keys?",
        "Nothing, unless the key is verified: a header is whatever the client writes, so a "
        "fresh key per request gets a fresh bucket each time. Key the limit on something the "
        "gateway has checked (an authenticated API key or token subject, validated before the "
        "limit) or on something the client cannot choose freely, such as its source IP, and "
        "keep a per-IP limit beside a per-key one."),
    Exercise(
        "07.2", f"burst=1, {AT_ONCE} requests at once every second: which share is rejected?",
        "Four of five (80%): a bucket of 1 token lets the first request of the burst through "
        "and rejects the rest, although 5 a second is far under the average of 20. burst is "
        "how bursty a client may be: size it for the bursts well-behaved clients really send "
        "(a page that fetches 5 resources at once), average for their sustained rate.",
        bursty_client, ("rejected",)),
    Exercise(
        "07.3", f"the polite client with {POLITE_USERS} users behind the bulkhead: requests in "
        "the service?",
        "About 5, the bulkhead's amount, not 10: the bulkhead counts requests in flight per "
        "client IP and cannot tell a polite client from an abusive one, so half of the polite "
        "client's users now get 429s. It protects the others from this client, not this "
        "client: a limit sized for the abusive client must still leave room for the largest "
        "legitimate one.",
        many_polite_users, ("in_service",)),
)
