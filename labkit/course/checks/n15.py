"""Notebook 15's exercises: authentication at the gateway."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import pandas as pd

from ...errors import LabError
from ...waits import wait_for
from ..exercises import Exercise, Findings, number, share
from .measure import ECHO_URL, close_to, faulted_instances, policy_settings

if TYPE_CHECKING:
    from ...lab import Lab

WEB_URL = "http://web.localhost/"
SHORT_TTL_S = 2
RETRY_SAMPLES = 40


def required_scope(lab: Lab, service: str) -> str | None:
    """The scope a service requires (lab.policies.require), or None when it is open."""
    return (policy_settings(lab, service, "auth") or {}).get("scope")


def mint(lab: Lab, scope: str, ttl: str = "5m") -> str:
    """A token for `scope`; asked again while a faulted auth instance refuses to make one
    (the next request goes to another instance)."""
    def attempt() -> str:
        try:
            return lab.token([scope], ttl=ttl)
        except LabError:
            return ""  # not yet
    return wait_for(attempt, what=f"the auth service to make a token for {scope}", timeout=5,
                    interval=0.1)


def statuses(lab: Lab, url: str, scope: str | None, n: int) -> pd.Series:
    """The statuses of `n` requests to `url` with a fresh token for `scope` (None: none)."""
    # imported here: labkit.lab imports the checks, and the demos import labkit.lab
    from ...demos.auth import bearer, probe
    headers = bearer(mint(lab, scope)) if scope else {}
    return probe(url, {"caller": headers}, n=n)["status"]


def status_said(status: object) -> int:
    return int(number(status, "status", 100, 599, "an HTTP status code"))


def both_protected(lab: Lab, status: object) -> Findings:
    said = status_said(status)
    found = Findings()
    for service, scope in (("web", "web:read"), ("echo", None)):
        required = required_scope(lab, service)
        found.require(required is not None and scope in (None, required),
                      f"{service} requires {required or 'nothing'}: "
                      f"lab.policies.require('{service}', '{scope or 'echo:read'}')")
    if found.missing:
        return found
    answered = statuses(lab, WEB_URL, "web:read", n=5)
    found.seen.append(f"a caller with a web:read token got {answered.value_counts().to_dict()} "
                      "from web, with web and echo protected")
    found.require(answered.eq(said).all(),
                  f"you said {said}: send web a request with lab.token(['web:read']) and read "
                  "its status")
    return found


def retried_auth(lab: Lab, served: object) -> Findings:
    said = share(served, "served")
    found = Findings()
    scope = required_scope(lab, "echo")
    found.require(scope is not None, "echo is open: lab.policies.require('echo', 'echo:read')")
    running = len(lab.instances("auth"))
    found.require(running == 2, f"auth runs {running} instances: lab.scale('auth', 2)")
    faults = faulted_instances(lab, "auth")
    found.require(any("error_rate 100%" in f for f in faults),
                  f"auth's faults: {'; '.join(faults) or 'none'}; fault one instance with "
                  "lab.fault('auth', 1, error_rate=1.0)")
    found.require(policy_settings(lab, "auth", "retry") is not None,
                  "auth has no retry policy: lab.policies.retry('auth', attempts=2)")
    if found.missing or scope is None:
        return found
    answered = statuses(lab, ECHO_URL, scope, n=RETRY_SAMPLES)
    measured = float((answered == 200).mean())
    found.seen.append(f"with one of 2 auth instances failing and retries on auth, "
                      f"{measured:.0%} of {len(answered)} protected requests were served "
                      f"({answered.value_counts().to_dict()})")
    found.require(close_to(said, measured, 0.15),
                  f"you said {said:.0%} are served: measure it with a token for {scope} "
                  "(labkit.demos.auth.probe), then ask which failures a gateway retries")
    return found


def auth_down(lab: Lab, status: object) -> Findings:
    said = status_said(status)
    found = Findings()
    scope = required_scope(lab, "echo")
    found.require(scope is not None, "echo is open: lab.policies.require('echo', 'echo:read')")
    running = len(lab.instances("auth"))
    found.require(running == 0, f"auth runs {running} instances: lab.scale('auth', 0)")
    if found.missing or scope is None:
        return found
    # no token: none can be made without auth, and the gateway could not check one anyway
    answered = statuses(lab, ECHO_URL, None, n=5)
    found.seen.append(f"with no auth instance, a request to echo (requiring {scope}) got "
                      f"{answered.value_counts().to_dict()}")
    found.require(answered.eq(said).all(),
                  f"you said {said}: send echo a request and read its status")
    return found


def expiry_seconds(lab: Lab, scope: str) -> float:
    """Seconds from minting a token with a short ttl to its first refused request."""
    from ...demos.auth import bearer  # imported here, as in statuses
    from ...lab import gateway_target
    target, host = gateway_target(ECHO_URL)
    token = mint(lab, scope, ttl=f"{SHORT_TTL_S}s")
    minted = time.time()
    with httpx.Client(timeout=3, headers={"Host": host or "", **bearer(token)}) as client:
        wait_for(lambda: client.get(target).status_code == 401,
                 what=f"a {SHORT_TTL_S} s token to be refused", timeout=SHORT_TTL_S + 5,
                 interval=0.1)
    return time.time() - minted


def short_token(lab: Lab, seconds: object) -> Findings:
    said = number(seconds, "seconds", 0, 60, f"when a ttl='{SHORT_TTL_S}s' token stops "
                  "working, in seconds after it was made")
    found = Findings()
    scope = required_scope(lab, "echo")
    if not found.require(scope is not None,
                         "echo is open, so every token works: "
                         "lab.policies.require('echo', 'echo:read')") or scope is None:
        return found
    measured = expiry_seconds(lab, scope)
    found.seen.append(f"a token with ttl='{SHORT_TTL_S}s' was refused (401) {measured:.1f} s "
                      "after it was made")
    found.require(close_to(said, measured, 1),
                  f"you said {said:g} s: send requests with such a token for 5 s and note "
                  "when the first 401 comes")
    return found


EXERCISES = (
    Exercise(
        "15.1", "web and echo both protected: what does a web:read caller get from web?",
        "502 Bad Gateway: the gateway lets the caller into web, but web calls echo through the "
        "gateway without a token, so echo's check answers 401, and web reports that its "
        "upstream failed. To pass, web would relay the caller's token (or exchange it for one "
        "scoped to echo). Relaying carries risks: echo then trusts whatever scopes the "
        "caller's token has, a token stolen from web works on echo too, and its lifetime now "
        "spans two services; a token exchange (narrower scope, audience echo) avoids both.",
        both_protected, ("status",)),
    Exercise(
        "15.2", "one of two auth instances failing, retries on auth: what share is served?",
        "About half: the failing instance answers 500, and a gateway retries only requests "
        "that never reached an instance (a refused or reset connection), not an answer: the "
        "retry policy does not help here. It would against a crashed instance. The retry goes "
        "on auth because the gateway's check is itself a request to auth's route: echo's "
        "policy never sees it. To hide a failing auth instance, take it out of rotation (a "
        "health check, a circuit breaker on auth) instead.",
        retried_auth, ("served",)),
    Exercise(
        "15.3", "no auth instance running: what do protected callers get?",
        "503 Service Unavailable, from the gateway: its check asks auth's route, which has "
        "no server, and forwardAuth passes that answer back instead of the request. The "
        "gateway fails closed. Failing open (serving without a check while auth is down) "
        "might be acceptable for routes whose data is public anyway and where availability "
        "matters more (a status page, public reads), never for writes or private data.",
        auth_down, ("status",)),
    Exercise(
        "15.4", f"a token with ttl='{SHORT_TTL_S}s': when does it stop working?",
        f"About {SHORT_TTL_S} s after it was made (its exp claim, in whole seconds), on the "
        "first request after: nobody revokes it, it expires. That is also its weakness: a "
        "leaked token works until it expires, so short lifetimes bound the damage, and a "
        "revocation before expiry needs state the gateway must consult (a deny list of token "
        "ids, or rotating the signing key, which revokes every token).",
        short_token, ("seconds",)),
)
