"""The catalogue of hidden incidents, and the seeded choice of one: no I/O.

Each incident has a truth (service, instance, cause) that the learner must find, a briefing
(the symptom as users would report it, never the cause) and the evidence that shows it.
`instance` is what the cause is about: an instance ("echo-2"), a version ("v2") or a client
address ("127.0.0.66").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import LabError

SERVICE = "echo"  # the service every incident hits: the one the users' traffic reaches
SLOTS = (1, 2, 3)  # echo's declared instances: one of them is the culprit
BAD_VERSION = "v2"
REGULAR_CLIENTS = ("127.0.0.21", "127.0.0.22", "127.0.0.23")  # the users, each at REGULAR_RPS
NOISY_CLIENTS = range(30, 100)  # the noisy client is 127.0.0.<one of these>
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Truth:
    service: str
    instance: str
    cause: str


@dataclass(frozen=True)
class Kind:
    """One kind of incident: what users report, what happened, what shows it."""

    cause: str
    title: str
    briefing: str
    what_happened: str  # with {instance}
    evidence: str


KINDS: dict[str, Kind] = {k.cause: k for k in (
    Kind("slow_instance", "a slow instance",
         "Users say echo.localhost is sometimes slow: about one request in three takes a "
         "quarter of a second, the others are instant as usual.",
         "{instance} answered every request 250 ms late (an injected latency), while the "
         "other instances stayed fast; round robin sent it a third of the traffic.",
         "the per-instance p95 latency in Prometheus "
         "(instance:lab_request_duration_seconds:p95_rate10s): one instance near 250 ms, the "
         "others a few ms; its spans in the traces are as slow."),
    Kind("failing_instance", "a failing instance",
         "Users see occasional 500 errors from echo.localhost, roughly one request in ten; "
         "trying again usually works.",
         "{instance} failed 30% of its requests (an injected error rate); the other "
         "instances, running the same version, failed none.",
         "the per-instance error ratio (instance:lab_errors:ratio_rate10s): one instance "
         "near 30%, the others at 0, all of them the same version; its error logs."),
    Kind("bad_release", "a bad canary",
         "Some users of echo.localhost get 500 errors, others never do; it started a "
         "little while ago and has not stopped.",
         "two instances of version {instance} were deployed beside v1 and given 30% of the "
         "traffic, and every one of them failed half of its requests.",
         "the per-version error ratio (version:lab_errors:ratio_rate10s): v2 near 50%, v1 "
         "at 0, and lab.versions() showing the split; per instance, every v2 instance "
         "fails, no v1 instance does."),
    Kind("hung_instance", "a hung instance",
         "Shortly after the game began, some echo.localhost requests hung until the "
         "client gave up; it seems calm now, but nobody knows why.",
         "{instance} was paused (SIGSTOP: alive, answering nothing) after its gateway "
         "health checks had been switched off, so only its registry lease, which it could "
         "no longer renew, took it out of the rotation, 3 s later.",
         "lab.status() lists the instance as RUNNING with a long uptime, but "
         "lab.instances() no longer does (its lease ran out); its metrics stopped, and "
         "the gateway's access log shows the timed-out requests sent to it."),
    Kind("noisy_client", "a noisy client",
         "echo.localhost's request rate has tripled, with no campaign or launch to explain "
         "it; latency is still fine, but the platform team worries about capacity.",
         "one client, {instance}, sent ten times as many requests as each of the regular "
         "users.",
         "the gateway's access log (lab.logs(service='traefik'), labkit.log_analysis."
         "top_clients): one client address with most of the requests; per instance, "
         "every metric healthy."),
    Kind("memory_leak", "a leaking instance",
         "A few echo.localhost requests failed with 502 Bad Gateway, all at about the same "
         "moment, for no visible reason.",
         "{instance} leaked 10 MiB a second against a 128 MiB memory limit: about 8 s in, "
         "the kernel kills it at the limit and supervisord restarts it.",
         "the per-instance resident memory in Prometheus (process_resident_memory_bytes): "
         "one instance climbing in a straight line, then dropping; lab.status() shows it "
         "with a far shorter uptime than its neighbours (a restart)."),
)}
CAUSES = tuple(KINDS)


@dataclass(frozen=True)
class Incident:
    kind: Kind
    truth: Truth
    slot: int  # the instance to break (unused by the noisy client and the bad release)
    seed: int

    @property
    def briefing(self) -> str:
        return self.kind.briefing

    @property
    def what_happened(self) -> str:
        return self.kind.what_happened.format(instance=self.truth.instance)


def check_seed(seed: object) -> int:
    """A seed is a whole number from 0 to MAX_SEED, or a LabError saying so."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise LabError(f"seed must be a whole number from 0 to {MAX_SEED} (or None: a random "
                       f"one), got {seed!r}")
    return seed


def choose(seed: int) -> Incident:
    """The incident a seed stands for: the same seed always gives the same incident."""
    rng = random.Random(check_seed(seed))
    kind = KINDS[rng.choice(CAUSES)]
    slot = rng.choice(SLOTS)
    if kind.cause == "bad_release":
        culprit = BAD_VERSION
    elif kind.cause == "noisy_client":
        culprit = f"127.0.0.{rng.choice(NOISY_CLIENTS)}"
    else:
        culprit = f"{SERVICE}-{slot}"
    return Incident(kind, Truth(SERVICE, culprit, kind.cause), slot, seed)
