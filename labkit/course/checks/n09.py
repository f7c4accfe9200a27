"""Notebook 09's exercises: metrics and dashboards."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import LabError
from ...topology import RULES
from ..exercises import Exercise, Findings, number
from .measure import ECHO_URL, close_to, faulted_instances

if TYPE_CHECKING:
    from ...lab import Lab

SLOW = "echo-2"
# a load longer than a rate window: the rules then describe this load alone
WINDOW_LOAD_S = RULES.window_s + RULES.evaluation_s
MIN_RPS = 10  # the load the checks ask for (30 rps) still fills most of the last window
KILLED = 1
HISTORY = "3m"  # how far back the check reads the kill's samples


def p95_ms(lab: Lab, level: str, selector: str) -> dict[str, float]:
    """p95 latency (ms) per lab_instance (level "instance") or for the service, from the
    lab's recording rules."""
    found = lab.metrics(f"{RULES.record(level, 'lab_request_duration_seconds', 'p95_')}"
                        f"{{{selector}}}")
    key = "lab_instance" if level == "instance" else "service"
    return {row[key]: 1000 * row["value"] for _, row in found.iterrows()}


def has_traffic(lab: Lab, found: Findings) -> bool:
    """Whether echo served the learner's load over the last rate window; if not, notes how
    to send it (the rules describe the last window only)."""
    rate = lab.metrics(f"{RULES.record('service', 'lab_requests')}{{service=\"echo\"}}")
    rps = float(rate["value"].iat[0]) if len(rate) else 0.0
    return found.require(rps >= MIN_RPS,
                         f"echo served {rps:.1f} requests/s over the last {RULES.window_s} s: "
                         f"send load for a whole window and check at once: lab.load("
                         f"'{ECHO_URL}', rps=30, seconds={WINDOW_LOAD_S})")


def slow_instance_p95(lab: Lab, service_p95_ms: object) -> Findings:
    said = number(service_p95_ms, "service_p95_ms", 0, 10_000,
                  "echo's p95 latency in ms as the service panel shows it")
    found = Findings()
    faults = faulted_instances(lab, "echo")
    slow = [f for f in faults if f.startswith(f"{SLOW}: latency")]
    found.require(bool(slow) and len(faults) == len(slow),
                  f"echo's faults: {'; '.join(faults) or 'none'}; the exercise wants a latency "
                  f"fault on {SLOW} only: lab.heal(), then lab.fault('echo', 2, latency='200ms')")
    if found.missing or not has_traffic(lab, found):
        return found
    by_instance = p95_ms(lab, "instance", 'service="echo"')
    service = p95_ms(lab, "service", 'service="echo"').get("echo", float("nan"))
    shown = ", ".join(f"{name} {ms:.0f} ms" for name, ms in sorted(by_instance.items()))
    found.seen.append(f"over the last {RULES.window_s} s: echo's p95 {service:.0f} ms; per "
                      f"instance: {shown}")
    found.require(close_to(said, service, 50, 1 / 4),
                  f"you said echo's p95 is {said:.0f} ms; the service panel shows "
                  f"{service:.0f} ms now: read the panel 'p95 latency per service'")
    return found


def per_instance(lab: Lab, promql: str, found: Findings) -> dict[str, float] | None:
    """The query's value per lab_instance, or None after noting why it has none."""
    try:
        result = lab.metrics(promql)
    except LabError as error:  # a malformed query: say what Prometheus said
        found.missing.append(f"Prometheus refused the query: {error}")
        return None
    if not found.require("lab_instance" in result.columns and not result.empty,
                         f"the query returned {len(result)} series without a lab_instance "
                         "label: the share is per instance, so keep that label (divide the "
                         "per-instance rate by a sum without it)"):
        return None
    return dict(zip(result["lab_instance"], result["value"], strict=True))


def instance_shares(lab: Lab, promql: object) -> Findings:
    if not isinstance(promql, str) or not promql.strip():
        raise LabError(f"promql is a PromQL expression (a str); got {promql!r}")
    found = Findings()
    shares = per_instance(lab, promql, found)
    if shares is None or not has_traffic(lab, found):
        return found
    instances = set(lab.instances("echo")["instance"])
    found.seen.append(f"over the last {RULES.window_s} s of load on echo, your query gives "
                      + ", ".join(f"{k} {v:.2f}" for k, v in sorted(shares.items())))
    found.require(set(shares) == instances,
                  f"the query should give one series per echo instance ({sorted(instances)}), "
                  f"gave {sorted(shares)}: select service=\"echo\"")
    total = sum(shares.values())
    found.require(abs(total - 1) <= 0.05,
                  f"the shares add up to {total:.2f}, not 1: divide each instance's rate by "
                  "the service's total (sum without the lab_instance label)")
    return found


def gone_from_up(lab: Lab, down_s: object, gone_s: object) -> Findings:
    said_down = number(down_s, "down_s", 0, 120, "seconds from the kill until up is 0")
    said_gone = number(gone_s, "gone_s", 0, 120,
                       f"seconds from the kill until echo-{KILLED}'s up series disappears")
    found = Findings()
    # up can only disappear after it was scraped as 0 (or never again): check the order first
    if not found.require(said_gone >= said_down,
                         f"you said up disappears ({said_gone:g} s) before it goes to 0 "
                         f"({said_down:g} s): which comes first?"):
        return found
    up = f'up{{job="services", lab_instance="echo-{KILLED}"}}'
    running = f"echo-{KILLED}" in set(lab.instances("echo")["instance"])
    if not found.require(not running and lab.metrics(up).empty,
                         f"echo-{KILLED} is still {'running' if running else 'in up'}"
                         f": lab.kill('echo', {KILLED}, restart=False), then wait until "
                         f"lab.metrics('{up}') is empty"):
        return found
    # Prometheus's own samples of the learner's kill: the last 1, the first 0, the last one
    samples = lab.metrics(f"{up}[{HISTORY}]")
    alive = samples[samples["value"] == 1]
    if not found.require(not alive.empty, f"echo-{KILLED} was not up in the last {HISTORY}: "
                                          "lab.heal(), then kill it again"):
        return found
    last_up = alive["time"].iat[-1]  # the kill (the latest one) came within a scrape after it
    zeros = samples[(samples["value"] == 0) & (samples["time"] > last_up)]
    if not found.require(not zeros.empty,
                         f"no up == 0 sample of echo-{KILLED} since it was last up: it was "
                         "stopped, not killed? lab.heal(), then lab.kill('echo', "
                         f"{KILLED}, restart=False)"):
        return found
    first_zero = zeros["time"].iat[0]
    down = (first_zero - last_up).total_seconds()
    # the series ends one scrape after its last sample (a stale marker, or no new sample)
    gone = (samples["time"].iat[-1] - last_up).total_seconds() + RULES.evaluation_s
    found.seen.append(f"Prometheus's samples of echo-{KILLED}: up 1 until {last_up:%H:%M:%S}, "
                      f"0 {down:.0f} s later, gone about {gone:.0f} s after the last 1 "
                      f"(scraped every {RULES.evaluation_s} s)")
    for name, said, measured in (("down_s", said_down, down), ("gone_s", said_gone, gone)):
        found.require(close_to(said, measured, 3, 1 / 3),
                      f"you said {name}={said:g} s; Prometheus's samples say about "
                      f"{measured:.0f} s. Time it from the kill, polling lab.metrics('{up}') "
                      "every half second")
    return found


EXERCISES = (
    Exercise(
        "09.1", f"latency on {SLOW} only: what does echo's service p95 panel show?",
        "About the injected latency, as echo-2's own panel does: round robin sends echo-2 a "
        "third of the requests, far more than the 5% a p95 may ignore, so both panels show it "
        "within the same scrape. Only the instance panel says which instance it is; with one "
        "slow instance among 30 (3% of the requests) the service's p95 would not move at all.",
        slow_instance_p95, ("service_p95_ms",)),
    Exercise(
        "09.2", "PromQL: each echo instance's share of echo's traffic",
        "instance:lab_requests:rate10s{service=\"echo\"} / ignoring(lab_instance, version) "
        "group_left sum by (service) (instance:lab_requests:rate10s{service=\"echo\"}): the "
        "division matches each instance's series with the service's sum, which has no "
        "lab_instance label; round robin gives each about a third.",
        instance_shares, ("promql",)),
    Exercise(
        "09.3", f"kill echo-{KILLED} with restart=False: when is up 0, when is it gone?",
        "up goes to 0 at the next scrape (within the 2 s scrape interval): Prometheus reaches "
        "the address and gets no answer. The series disappears only when the target leaves "
        "Prometheus's discovery, once the dead instance's registry lease expires and the next "
        "discovery refresh drops it; until then an alert on up == 0 can fire, after it the "
        "instance is simply no longer there, so alert on fewer instances than expected too.",
        gone_from_up, ("down_s", "gone_s")),
)
