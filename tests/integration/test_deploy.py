"""Deployments on the live stack: shifting with readback, rollback, canary, rollout abort."""

from collections import Counter

import httpx
import pytest

from labkit.errors import LabError
from labkit.rollout import RolloutAborted
from labkit.servicelock import ServiceLock
from labkit.topology import infra

from .helpers import declared_stack

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]


@pytest.fixture
def blue_green(lab):
    """echo: 3 x v1 serving, 1 x v2 beside them; back to the declared stack afterwards."""
    declared_stack(lab)
    lab.deploy("echo", "v2", 1)
    yield lab
    declared_stack(lab)


def versions_served(n: int, headers: dict | None = None) -> Counter:
    with httpx.Client(base_url=infra().gateway.url, timeout=5) as client:
        return Counter(client.get("/", headers={"Host": "echo.localhost", **(headers or {})})
                       .headers.get("x-version") for _ in range(n))


def test_new_version_gets_nothing_until_shifted_then_exactly_its_weight(blue_green):
    lab = blue_green
    assert versions_served(50) == {"v1": 50}
    assert versions_served(10, {"X-Version": "v2"}) == {"v2": 10}, "testers reach v2 by header"
    lab.shift("echo", "tenth", to="v2")  # returns once Traefik's API shows it
    assert versions_served(100) == {"v1": 90, "v2": 10}
    table = lab.versions("echo").set_index("version")
    assert table.loc["v2", "weight_pct"] == 10 and table.loc["v2", "registered"] == 1

    lab.shift("echo", "full", to="v2")
    assert versions_served(20) == {"v2": 20}
    assert lab.rollback("echo") == {"v1": 90, "v2": 10}
    assert versions_served(100) == {"v1": 90, "v2": 10}


def test_bad_weights_and_a_second_deployment_change_nothing(blue_green):
    lab = blue_green
    before = lab.versions("echo")
    for bad in ({"v1": -1}, {"v1": "ten"}, {"v7": 1}, {"v1": 0, "v2": 0}, {"v3": 100}, "most"):
        with pytest.raises(LabError):
            lab.shift("echo", bad)
    with ServiceLock(lab.backend.state, "echo", "a rollout in another notebook"), \
            pytest.raises(LabError, match="echo is busy with a rollout in another notebook"):
        lab.shift("echo", {"v1": 50, "v2": 50})
    assert lab.versions("echo").equals(before)
    assert versions_served(20) == {"v1": 20}


def test_a_failing_canary_is_rolled_back_and_a_healthy_one_promoted(blue_green):
    lab = blue_green
    v2 = int(lab.instances("echo").query("version == 'v2'")["slot"].iloc[0])
    lab.fault("echo", v2, error_rate=0.5)
    traffic = lab.start_load("http://echo.localhost/", rps=100, seconds=50)
    try:
        bad = lab.canary("echo", to="v2", steps=[20, 100], interval=14)
        assert bad["decision"].tolist() == ["rollback"], bad.to_string()
        assert versions_served(30) == {"v1": 30}, "v1 carries all the traffic again"
        lab.fault("echo", v2, error_rate=0)
        good = lab.canary("echo", to="v2", steps=[20, 100], interval=14)
        assert good["decision"].tolist() == ["continue", "promote"], good.to_string()
        assert versions_served(20) == {"v2": 20}
    finally:
        traffic.result()


def test_a_rollout_whose_instances_never_get_ready_is_aborted(lab):
    declared_stack(lab)
    try:
        with pytest.raises(RolloutAborted, match="rollout of echo to v3 aborted") as caught:
            lab.rollout("echo", "v3", ready_timeout=3)
        assert "never routed" in caught.value.report["started"].iloc[-1]
        assert set(lab.instances("echo")["version"]) == {"v1"}
        assert versions_served(30) == {"v1": 30}
        with pytest.raises(LabError, match="batch must be a whole number from 1 to 3"):
            lab.rollout("echo", "v2", batch=4)
    finally:
        declared_stack(lab)
