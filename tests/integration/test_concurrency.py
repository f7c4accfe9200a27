"""Issue #11: concurrent labkit calls on the live stack cannot corrupt it. Calls on one service
(scale, heal, deployments) run one at a time, refused while another holds the service's lock;
calls on different services go ahead together and keep both declared counts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from labkit.errors import LabError
from labkit.servicelock import in_progress, lock_path
from labkit.topology import service
from labkit.waits import wait_for

from .helpers import declared_stack

pytestmark = [pytest.mark.live, pytest.mark.timeout(150)]


@pytest.fixture
def healed(lab):
    declared_stack(lab)
    yield lab
    declared_stack(lab)


def at_once(*calls: Callable[[], object]) -> list[object]:
    """Run the calls on their own threads, released together; each one's result or error."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> object:
        start.wait(timeout=10)
        try:
            return call()
        except LabError as error:
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def consistent(lab, name: str) -> tuple[int, int, int]:
    """(instances running, instances registered, declared count) of a service."""
    svc = service(name)
    return (len(lab.backend.active_slots(svc)), len(lab.instances(name)),
            lab.backend.desired_replicas(svc))


def test_two_scales_of_one_service_end_consistent(healed):
    lab = healed
    results = at_once(lambda: lab.scale("echo", 5), lambda: lab.scale("echo", 2))
    refusals = [r for r in results if isinstance(r, LabError)]
    assert len(refusals) == 1, f"one scale should run and the other be refused: {results}"
    # "busy with scale to 2 (...)", or, if it read the lock file as the holder wrote it,
    # "busy with an operation that has just started or ended" (seen once under parallel labs)
    assert "echo is busy with" in str(refusals[0])
    winner = 5 if isinstance(results[1], LabError) else 2
    assert consistent(lab, "echo") == (winner, winner, winner), \
        "running, registered and declared should all be the scale that ran"


def test_scaling_two_services_at_once_keeps_both_counts(healed):
    lab = healed
    for echo, web in ((4, 2), (3, 1)):
        results = at_once(lambda e=echo: lab.scale("echo", e), lambda w=web: lab.scale("web", w))
        assert not [r for r in results if isinstance(r, LabError)], results
        assert consistent(lab, "echo") == (echo, echo, echo)
        assert consistent(lab, "web") == (web, web, web)


def test_scale_during_a_rollout_is_refused_and_no_phantom_fault_follows(healed):
    lab = healed
    with ThreadPoolExecutor(1) as pool:
        rollout = pool.submit(lab.rollout, "echo", "v2", batch=1, surge=1)
        wait_for(lambda: in_progress(lock_path(lab.backend.state, "echo")) is not None,
                 what="the rollout to take echo's lock", timeout=10)
        with pytest.raises(LabError, match=r"echo is busy with rollout to v2 \(in progress"):
            lab.scale("echo", 1)
        with pytest.raises(LabError, match="echo is busy with rollout to v2"):
            lab.heal()
        report = rollout.result(timeout=120)
    assert len(report) == 3, report.to_string()
    assert set(lab.instances("echo")["version"]) == {"v2"}
    assert consistent(lab, "echo") == (3, 3, 3)
    assert lab.faults().empty, f"no fault is in force after a rollout:\n{lab.faults()}"
