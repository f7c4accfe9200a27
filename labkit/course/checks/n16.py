"""Notebook 16's exercises: mutual TLS between the gateway and the instances."""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING

import pandas as pd

from ... import certs, pki
from ...demos.routeguide import call_log
from ...errors import LabError
from ...security import MIN_LIFETIME_S
from ..exercises import Exercise, Findings, choice, number
from .measure import ECHO_URL, close_to, error_share

if TYPE_CHECKING:
    from ...lab import Lab

SHORT_LIFETIME_S = 60
RENEW_S = certs.RENEW_EVERY.total_seconds()
# what a client that balances by itself would need on mTLS, and three that would not help
CLIENT_NEEDS = ("certificate", "retries", "timeout", "token")
CALLS = 6  # over each channel: every routeguide instance more than once


def short_lifetime(lab: Lab, valid: object) -> Findings:
    said = number(valid, "valid", 0, 3600, "how many seconds an instance's renewed "
                  "certificate is valid, from not_before to not_after")
    found = Findings()
    table = lab.security.certificates()
    leaves = table[table["file"].str.startswith("tls/instances/echo-")]
    made = leaves["not_before"].max() + pki.CLOCK_SKEW
    lifetime = (leaves["not_after"].max() - made).total_seconds()
    if not found.require(lifetime <= SHORT_LIFETIME_S + 1,
                         f"echo's certificates live {lifetime:.0f} s from their renewal: "
                         f"lab.security.rotate(lifetime='{SHORT_LIFETIME_S // 60}m')"):
        return found
    window = (leaves["not_after"] - leaves["not_before"]).dt.total_seconds().max()
    renewal = made + certs.RENEW_EVERY
    gap = (renewal - leaves["not_after"].max()).total_seconds()
    frame = lab.load(ECHO_URL, rps=20, seconds=1)
    found.seen.append(f"echo's certificates were renewed with a {lifetime:.0f} s lifetime and "
                      f"are valid for {window:.0f} s; the certs program renews every "
                      f"{RENEW_S:.0f} s, so next at "
                      f"{renewal:%H:%M:%S} UTC, {gap:.0f} s after they expire; through the "
                      f"gateway now, {error_share(frame):.0%} of {len(frame)} requests failed")
    found.require(close_to(said, window, 2),
                  f"you said {said:g} s: read not_before and not_after of an instance's row "
                  "in lab.security.certificates() (the difference is not only the lifetime)")
    return found


def client_side_on_mtls(lab: Lab, needs: object) -> Findings:
    said = choice(needs, "needs", CLIENT_NEEDS)
    found = Findings()
    if not found.require(lab.security.mtls(),
                         "mTLS is off: lab.security.mtls(True), then call routeguide over "
                         "lab.grpc_channel('routeguide', 'round_robin')"):
        return found
    with lab.grpc_channel("routeguide", "round_robin") as direct, \
            lab.grpc_channel("routeguide", "gateway") as gateway:
        balanced, through = call_log(direct, CALLS), call_log(gateway, CALLS)
    found.seen.append(
        "client-side round_robin: " + summary(balanced) + "; through the gateway: "
        + summary(through))
    found.require((balanced["code"] != "OK").all(),
                  "a call over client-side balancing was answered: mTLS is not yet in force on "
                  "every routeguide instance (lab.security.mtls() switches them one by one)")
    found.require((through["code"] == "OK").all(),
                  "a call through the gateway failed: the gateway holds a lab certificate, so "
                  "this should work (lab.status() shows what is down)")
    found.require(said == "certificate",
                  f"you said {said!r}: a token, a retry or a timeout acts on a request, and "
                  "these calls are closed before any request is sent (read the error's details)")
    return found


def readable_by_others(lab: Lab, readable: object) -> Findings:
    tls = certs.folder(lab.backend.state)
    if not isinstance(readable, str) or not readable:
        raise LabError(f"readable is a file's name in {tls}, as ls -l shows it (e.g. "
                       f"'instances/echo-1.pem'); got {readable!r}")
    found = Findings()
    modes = {path.relative_to(tls).as_posix(): stat.S_IMODE(path.stat().st_mode)
             for path in sorted(tls.rglob("*")) if path.is_file()}
    others = [name for name, mode in modes.items() if mode & stat.S_IROTH]
    found.seen.append(f"{len(modes)} files in {tls}, whose own mode is "
                      f"{stat.S_IMODE(tls.stat().st_mode):04o}")
    if not found.require(readable in modes, f"there is no file {readable!r} in {tls}: ls -l it "
                                            "(and its instances/ folder)"):
        return found
    found.require(readable in others, f"{readable} is {modes[readable]:04o}: other users "
                                      "cannot read it")
    found.require(len(others) <= 1, "another file there is readable by others too: look again")
    return found


def summary(calls: pd.DataFrame) -> str:
    """How a call log's calls ended, e.g. "6 UNAVAILABLE"."""
    return ", ".join(f"{n} {code}" for code, n in calls["code"].value_counts().items())


EXERCISES = (
    Exercise(
        "16.1", "stop the certs program: what happens 5 minutes after the last renewal?",
        "Five minutes later, every serial renewed in the meantime by the `certs` program "
        f"(every {RENEW_S:.0f} s, a third of the 5-minute lifetime) has changed, and `issuer` "
        "is the lab CA each time. Stopped, nothing renews: the certificates of the instances, the "
        "gateway and Prometheus expire 5 minutes after the last renewal, every handshake "
        "between the gateway and an instance fails, and on mTLS every request through the "
        "gateway fails at once (502), as does Prometheus's scrape. Renewal every third of the "
        "lifetime leaves room for two failed renewals: alert on the certificates' age, long "
        "before they expire."),
    Exercise(
        "16.2", "why does lab.grpc_channel('routeguide', 'round_robin') fail on mTLS?",
        "Client-side balancing connects to each instance directly, and on mTLS an instance "
        "refuses in the handshake any client without a certificate from the lab CA; the "
        "gateway has one, so calls through it work. The client would need a certificate and "
        "key of its own from the lab CA (renewed like the others), and to trust the CA for "
        "the instances' certificates: every client that balances by itself joins the PKI, "
        "which is what a service mesh's sidecar does for it.",
        client_side_on_mtls, ("needs",)),
    Exercise(
        "16.3", f"rotate(lifetime='{SHORT_LIFETIME_S // 60}m'): how long is a certificate "
                "valid, and what bounds the lifetime?",
        f"{SHORT_LIFETIME_S + pki.CLOCK_SKEW.seconds} s: the lifetime plus "
        f"{pki.CLOCK_SKEW.seconds} s of validity before it was made, for clocks a little "
        "behind. The lower bound is renewal: a certificate must be renewed and picked up by "
        "its holder (instances re-read their file every second, the gateway switches "
        "generation) well before it expires, with room for a failed renewal and for clock "
        f"skew; labkit refuses under {MIN_LIFETIME_S} s. Here the certs program still renews "
        f"every {RENEW_S:.0f} s, a "
        "third of the usual 5 minutes, so 1-minute certificates expire before their next "
        "renewal: a shorter lifetime needs a faster renewal loop (and costs a signature per "
        "certificate each time).",
        short_lifetime, ("valid",)),
    Exercise(
        "16.4", "ls -l .lab/tls/: which file may other users read, and why is that safe?",
        "Only ca.pem (0644): the CA's certificate, which every client must read to trust the "
        "gateway and which holds no secret. Every key (ca-key.pem, the gateway's, the "
        "instances', Prometheus's) is 0600 in 0700 folders: with the CA key anyone could "
        "issue certificates the instances accept, with an instance's key anyone could "
        "impersonate it.",
        readable_by_others, ("readable",)),
)
