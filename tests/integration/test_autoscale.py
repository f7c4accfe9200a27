"""Issue #16, item 5: the autoscaler against the live stack: a load ramp scales echo up, its
end scales it back down after the stabilization window, within min and max."""

from __future__ import annotations

import time

import pytest

from labkit.errors import LabError
from labkit.waits import wait_for

from .helpers import declared_stack

pytestmark = [pytest.mark.live, pytest.mark.timeout(150)]


@pytest.fixture
def autoscaled_lab(lab):
    declared_stack(lab)
    yield lab
    declared_stack(lab)  # heal() stops every autoscaler


def test_a_ramp_scales_echo_up_and_its_end_back_down(autoscaled_lab):
    lab = autoscaled_lab
    scaler = lab.autoscale("echo", min=2, max=5, target_rps_per_instance=20,
                           stabilization="6s", interval="2s")
    with pytest.raises(LabError, match="echo is autoscaled already"):
        lab.autoscale("echo", min=1, max=2, target_rps_per_instance=20)
    started = time.monotonic()
    traffic = lab.start_load("http://echo.localhost/", rps=100, seconds=36)
    # 100 rps / 20 per instance: 5 once the gateway's 10 s rate passes 80 (bench/autoscale:
    # 8.3-10.6 s after the step). On a busy CI machine the rate passed 78 first and starting
    # echo-4 took 8.7 s, echo-5 5.5 s more: 5 about 26 s after the step
    wait_for(lambda: len(lab.instances("echo")) == 5, what="the autoscaler to reach 5",
             timeout=34, diagnose=lambda: scaler.decisions.tail(8).to_string())
    up_s = time.monotonic() - started
    frame = traffic.result()
    ended = time.monotonic()
    # no load: down to min, but not before the window has passed since the last high rate
    wait_for(lambda: len(lab.instances("echo")) == 2, what="the autoscaler to go down to 2",
             timeout=45, diagnose=lambda: scaler.decisions.tail(8).to_string())
    down_s = time.monotonic() - ended
    decisions = scaler.stop()
    assert not scaler.running
    acted = decisions[decisions["action"] != "none"]
    assert acted["action"].str.startswith("scale").all(), acted.to_string()
    assert (decisions["stabilized"].dropna().between(2, 5)).all()
    assert decisions["reason"].str.contains("held by the 6 s stabilization window").any()
    assert (frame["status"] == 200).mean() > 0.99, "scaling under load should fail no request"
    print(f"up to 5 in {up_s:.1f} s, down to 2 {down_s:.1f} s after the load; "
          f"{len(acted)} scale(s)")


def test_autoscaling_a_service_being_scaled_is_refused_naming_it(autoscaled_lab):
    from labkit.servicelock import ServiceLock

    lab = autoscaled_lab
    with ServiceLock(lab.backend.state, "echo", "a rollout to v2"), \
            pytest.raises(LabError, match="echo is busy with a rollout to v2"):
        lab.autoscale("echo", min=2, max=4, target_rps_per_instance=20)
