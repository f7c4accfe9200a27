"""Deployments without a stack: validation, presets, the canary's judgement, release files."""

import json
import math

import pytest
from labstack.settings import Settings

from labkit import canary
from labkit.backends.local import LocalBackend
from labkit.deploy import Deployments
from labkit.errors import LabError
from labkit.mirroring import check_percent
from labkit.rollout import check
from labkit.servicelock import ServiceLock
from labkit.shifting import check_weights, describe, preset
from labkit.topology import service
from labkit.versions import ReleaseFiles

ECHO = service("echo")
RUNNING = {"v1": 3, "v2": 2}


def test_weights_are_whole_numbers_per_registered_version():
    assert check_weights(ECHO, {"v1": 90, "v2": 10}, RUNNING) == {"v1": 90, "v2": 10}
    assert check_weights(ECHO, {"v1": 0, "v2": 100.0}, RUNNING) == {"v2": 100}


@pytest.mark.parametrize(("weights", "message"), [
    ({"v1": -1}, "whole number from 0 to 2147483647"),
    ({"v1": "90"}, "whole number from 0 to 2147483647"),
    ({"v1": True}, "whole number from 0 to 2147483647"),
    ({"v1": 2.5}, "whole number from 0 to 2147483647"),
    ({"v1": math.nan}, "whole number from 0 to 2147483647"),
    ({"v1": 2**31}, "whole number from 0 to 2147483647"),
    ({"v1": 1e30}, "whole number from 0 to 2147483647"),
    ({"v9": 10}, "its versions: v1, v2, v3"),
    ({"v1": 0, "v2": 0}, "sum to zero"),
    ({}, "dict of version to weight"),
    ([90, 10], "dict of version to weight"),
    ({"v1": 90, "v3": 10}, "no instance of v3 is registered"),
])
def test_bad_weights_are_refused_naming_what_is_valid(weights, message):
    with pytest.raises(LabError, match=message):
        check_weights(ECHO, weights, RUNNING)


def test_presets_move_a_share_from_the_busiest_version():
    assert preset("tenth", "v2", None, ECHO, majority="v1") == {"v1": 90, "v2": 10}
    assert preset("half", "v2", {"v1": 90, "v2": 10}, ECHO, majority="v1") == {"v1": 50, "v2": 50}
    assert preset("full", "v2", {"v1": 50, "v2": 50}, ECHO, majority="v1") == {"v2": 100}
    with pytest.raises(LabError, match="needs to=<version>"):
        preset("half", None, None, ECHO, majority="v1")
    with pytest.raises(LabError, match="nothing to shift from"):
        preset("half", "v2", {"v2": 100}, ECHO, majority="v2")


def test_describe_shows_percentages():
    assert describe({"v1": 9, "v2": 1}) == "v1 90% / v2 10%"
    assert describe(None) == "the whole fleet (no split)"


def test_canary_plan_is_checked_before_anything_moves():
    plan = canary.check_plan([5, 25, 50, 100], 15, {"p95_ms": 100}, 50)
    assert plan.slo == {**canary.DEFAULT_SLO, "p95_ms": 100}
    for steps in ([50, 25, 100], [5, 50], [0, 100], [], "5,100", [5, 5, 100]):
        with pytest.raises(LabError, match="steps must"):
            canary.check_plan(steps, 15, None, 50)
    with pytest.raises(LabError, match=r"interval must be .* from 14"):
        canary.check_plan([100], 5, None, 50)
    with pytest.raises(LabError, match="unknown slo key 'errors'; valid keys: error_ratio"):
        canary.check_plan([100], 15, {"errors": 0.1}, 50)
    with pytest.raises(LabError, match="slo p95_ms must be a number >= 0"):
        canary.check_plan([100], 15, {"p95_ms": -1}, 50)
    with pytest.raises(LabError, match="min_requests"):
        canary.check_plan([100], 15, None, 0)


PLAN = canary.check_plan([10, 50, 100], 14, None, 50)
GOOD = canary.Evidence(requests=500, error_ratio=0.0, p95_ms=2.0)


@pytest.mark.parametrize(("evidence", "passed", "reason"), [
    (GOOD, True, "within limits"),
    (canary.Evidence(500, 0.2, 2.0), False, "error ratio 20.0% > 1.0%"),
    (canary.Evidence(500, 0.0, 300.0), False, "p95 300 ms > 250 ms"),
    (canary.Evidence(500, 0.0, 9.5), False, "2 x the baseline's 2.0 ms"),
    (canary.Evidence(500, 0.0, 8.5), True, "within limits"),  # within the buckets' noise
    (canary.Evidence(10, 0.0, 2.0), False, "too little evidence"),
    (None, False, "too little evidence"),
])
def test_the_canary_is_judged_against_the_slo_and_the_baseline(evidence, passed, reason):
    verdict, why = canary.judge(GOOD, evidence, PLAN)
    assert verdict is passed and reason in why


def test_a_baseline_with_errors_raises_the_allowed_error_ratio():
    noisy = canary.Evidence(500, 0.05, 2.0)
    assert canary.judge(noisy, canary.Evidence(500, 0.055, 2.0), PLAN)[0]


def run_canary(evidence_by_step):
    shifts, clock = [], [0.0]
    steps = iter(evidence_by_step)
    report = canary.run(
        PLAN, "v1", "v2", shift=shifts.append,
        observe=lambda start, end: (start, end) and next(steps),
        progress=lambda _msg: None, clock=lambda: clock[0],
        sleep=lambda s: clock.__setitem__(0, clock[0] + s),
    )
    return report, shifts


def test_a_healthy_canary_is_promoted_step_by_step():
    report, shifts = run_canary([{"v1": GOOD, "v2": GOOD}] * 3)
    assert shifts == [{"v1": 90, "v2": 10}, {"v1": 50, "v2": 50}, {"v2": 100}]
    assert report["decision"].tolist() == ["continue", "continue", "promote"]
    assert report.attrs["outcome"] == "promote"


def test_a_failing_canary_is_rolled_back_at_the_first_bad_step():
    bad = canary.Evidence(500, 0.3, 2.0)
    report, shifts = run_canary([{"v1": GOOD, "v2": GOOD}, {"v1": GOOD, "v2": bad}])
    assert shifts == [{"v1": 90, "v2": 10}, {"v1": 50, "v2": 50}, {"v1": 100}]
    assert report["decision"].tolist() == ["continue", "rollback"]
    assert report.loc[1, "canary_error_ratio"] == 0.3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"version": "v7"}, "its versions"),
    ({"batch": 0}, "batch must be a whole number from 1 to 4"),
    ({"batch": 5}, "batch must be a whole number from 1 to 4"),
    ({"surge": 2}, "surge must be a whole number from 0 to 1"),
    ({"surge": -1}, "surge must be"),
    ({"ready_timeout": 0}, "ready_timeout"),
])
def test_rollout_arguments_are_checked(kwargs, message):
    args = {"version": "v2", "batch": 1, "surge": 1, "ready_timeout": 10, **kwargs}
    with pytest.raises(LabError, match=message):
        check(ECHO, args["version"], args["batch"], args["surge"], args["ready_timeout"],
              fleet=4, old=4)


def test_rollout_surge_must_fit_the_slots():
    with pytest.raises(LabError, match="exceeds the 10 slots"):
        check(ECHO, "v2", 1, 1, 10, fleet=10, old=10)


def test_release_files_follow_the_current_release(tmp_path):
    files = ReleaseFiles(LocalBackend(tmp_path))
    assert files.version(ECHO, 4) == "v1"
    files.assign(ECHO, 4, "v2")
    assert files.version(ECHO, 4) == "v2"
    files.adopt(ECHO, "v2", running=[1, 2])
    assert files.current(ECHO) == "v2" and files.version(ECHO, 7) == "v2"
    assert files.version(ECHO, 1) == "v1", "a running slot keeps what it runs"
    files.reset(ECHO)
    assert [files.version(ECHO, s) for s in (1, 4, 7)] == ["v1", "v1", "v1"]


def test_an_instance_reads_its_release_file(tmp_path):
    path = tmp_path / "echo-4.json"
    path.write_text(json.dumps(ECHO.release("v3").environment()))
    env = {"LAB_SERVICE": "echo", "LAB_SLOT": "4", "LAB_VERSION": "v1", "LAB_HOST": "127.0.9.4",
           "LAB_PORT": "8080", "LAB_ETCD": "http://127.0.0.1:2379",
           "LAB_RELEASE_FILE": str(path)}
    settings = Settings.from_env(env)
    assert (settings.version, settings.text, settings.never_ready) == ("v3", "hello from v3", True)
    path.write_text(json.dumps({"LAB_PORT": "1"}))
    with pytest.raises(Exception, match="must map some of LAB_VERSION"):
        Settings.from_env(env)


@pytest.mark.parametrize("percent", [0, 101, -5, 50.5, "all", True])
def test_a_mirror_percent_is_a_whole_number_from_1_to_100(percent):
    with pytest.raises(LabError, match="whole number from 1 to 100"):
        check_percent(percent)
    assert check_percent(100) == 100


class _Untouchable:
    """A backend (or etcd) that fails on any use but the lab's state folder."""

    def __init__(self, state=None):
        self.state = state

    def __getattr__(self, name):
        raise AssertionError(f"{name} used before taking the lock")


@pytest.mark.parametrize("action", [
    lambda d: d.rollout("echo", "v2", 1, 1, 10),
    lambda d: d.canary("echo", "v2", [10, 100], 15, None, 10),
    lambda d: d.shift("echo", {"v1": 90, "v2": 10}),
    lambda d: d.deploy("echo", "v2", 1),
])
def test_a_deployment_takes_the_lock_before_reading_the_stack(action, tmp_path):
    deployments = Deployments(_Untouchable(tmp_path), lambda _msg: None, _Untouchable())
    try:
        with ServiceLock(tmp_path, "echo", "a rollout in another notebook"), \
                pytest.raises(LabError, match="echo is busy with a rollout in another notebook"):
            action(deployments)
    finally:
        deployments.close()
