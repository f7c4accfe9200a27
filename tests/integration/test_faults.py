"""Every fault kind against the live stack, and heal() undoing each."""

import time

import httpx
import pytest

from labkit.errors import LabError
from labkit.topology import infra, service

from .helpers import registered, wait

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]

ECHO = service("echo")


@pytest.fixture
def healed(lab):
    lab.heal()
    lab.scale("echo", 3)
    yield lab
    lab.heal()
    assert lab.faults().empty, lab.faults()


def through_gateway(n):
    with httpx.Client(base_url=infra().gateway.url, headers={"Host": "echo.localhost"},
                      timeout=5) as client:
        return [client.get("/") for _ in range(n)]


def slots(lab):
    return {slot for slot, _pid in registered(lab, "echo")}


def test_latency_slows_only_the_faulty_instance(healed):
    lab = healed
    lab.fault("echo", 1, latency="150ms")
    responses = through_gateway(9)
    slow = [r.elapsed.total_seconds() for r in responses if r.headers["X-Instance"] == "echo-1"]
    fast = [r.elapsed.total_seconds() for r in responses if r.headers["X-Instance"] != "echo-1"]
    assert slow and min(slow) >= 0.15
    assert max(fast) < 0.15
    assert list(lab.faults()["fault"]) == ["latency"]


def test_error_rate_fails_the_faulty_instances_requests(healed):
    lab = healed
    lab.fault("echo", 2, error_rate=1.0)
    by_instance = {}
    for r in through_gateway(9):
        by_instance.setdefault(r.headers["X-Instance"], set()).add(r.status_code)
    assert by_instance.pop("echo-2") == {500}
    assert set().union(*by_instance.values()) == {200}


def test_a_leak_and_a_burn_are_listed_with_what_they_hold_and_heal_ends_them(healed):
    lab = healed
    lab.fault("echo", 3, leak_mb_per_s=20, cpu_burn=0.2)
    assert wait(lambda: lab.faults()["detail"].str.contains(r"\([1-9][\d.]* MB held\)").any(), 5)
    listed = lab.faults().set_index("fault")
    assert set(listed.index) == {"leak", "cpu_burn"} and set(listed["instance"]) == {"echo-3"}
    assert listed.loc["leak", "detail"].startswith("leaking 20 MB/s (")
    assert listed.loc["cpu_burn", "detail"] == "burning 20% of a core"
    lab.heal()
    assert lab.faults().empty


def test_unready_leaves_the_registry_at_once_but_stays_alive(healed):
    lab = healed
    lab.fault("echo", 1, unready=True)
    assert wait(lambda: 1 not in slots(lab), 0.5)
    address = ECHO.endpoint(1).url
    assert httpx.get(f"{address}/health").status_code == 200
    assert httpx.get(f"{address}/ready").status_code == 503
    assert list(lab.faults()["fault"]) == ["unready"]
    lab.heal()
    assert 1 in slots(lab)


def test_graceful_stop_deregisters_at_once_and_heal_restarts(healed):
    lab = healed
    lab.stop("echo", 3)  # returns once the gateway dropped it
    assert 3 not in slots(lab)
    assert lab.faults()[["instance", "fault"]].values.tolist() == [["echo-3", "stopped"]]
    lab.heal()
    assert 3 in slots(lab)


def test_crash_without_restart_stays_down_until_heal(healed):
    lab = healed
    pid = lab.kill("echo", 2, restart=False)
    assert wait(lambda: 2 not in slots(lab), 5)
    time.sleep(1)
    assert 2 not in lab.backend.active_slots(ECHO), "supervisord restarted it"
    assert ["echo-2", "stopped"] in lab.faults()[["instance", "fault"]].values.tolist()
    lab.heal()
    assert any(slot == 2 and p != pid for slot, p in registered(lab, "echo"))


def test_hang_is_listed_and_heal_resumes_it(healed):
    lab = healed
    pid = lab.pause("echo", 3)
    assert lab.faults()[["instance", "fault"]].values.tolist() == [["echo-3", "hang"]]
    lab.heal()
    assert (3, pid) in registered(lab, "echo")


def test_slow_start_delays_readiness_after_a_restart(healed):
    lab = healed
    lab.slow_start("echo", 3, 2.0)
    restarted = time.monotonic()
    time.sleep(0.8)
    assert 3 not in slots(lab), "a slow-starting instance registered too early"
    assert "slow_start" in set(lab.faults()["fault"])
    assert wait(lambda: 3 in slots(lab), 5)
    assert time.monotonic() - restarted >= 1.5


@pytest.mark.parametrize(
    ("faults", "message"),
    [
        ({"latencyy": "1s"}, "unknown fault 'latencyy'; valid faults: latency, jitter"),
        ({"latency": -5}, "latency must be a finite, non-negative duration"),
        ({"latency": "fast"}, "latency must be a number of seconds or a string such as '250ms'"),
        ({"latency": "10ms", "distribution": "gauss"}, "fixed, uniform, exponential"),
        ({"jitter": "5ms"}, "pass latency= too"),
        ({"error_rate": 1.5}, "between 0 and 1"),
        ({"leak_mb_per_s": 500}, r"leak_mb_per_s \(MB held per second\) must be a number between "
                                 "0 and 100, got 500"),
        ({"cpu_burn": -0.5}, "cpu_burn .* between 0 and 1"),
        ({"unready": "yes"}, "True or False"),
        ({}, "no fault given"),
    ],
)
def test_bad_faults_are_refused_before_anything_changes(healed, faults, message):
    lab = healed
    with pytest.raises(LabError, match=message):
        lab.fault("echo", 1, **faults)
    assert lab.faults().empty


def test_faulting_an_unknown_target_names_the_valid_ones(healed):
    lab = healed
    with pytest.raises(LabError, match="known services: auth, echo, routeguide, web"):
        lab.fault("nope", 1, error_rate=0.5)
    with pytest.raises(LabError, match="running instances: 1, 2, 3"):
        lab.fault("echo", 7, error_rate=0.5)
    with pytest.raises(LabError, match="slow start must be a finite, non-negative duration"):
        lab.slow_start("echo", 1, -1)
    assert lab.faults().empty
