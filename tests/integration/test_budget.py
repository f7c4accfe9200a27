"""Issue #16, item 4: the lab's capacity budget refuses scale, deploy, a rollout's surge and
limits beyond it, naming what it allows and what is in use, and changes nothing."""

from __future__ import annotations

import pytest

from labkit.errors import LabError

from .helpers import declared_stack

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]


@pytest.fixture
def budget_lab(lab):
    declared_stack(lab)
    yield lab
    declared_stack(lab)  # heal() removes the budget and the limits
    assert lab.budget()["allowed"].isna().all()


def test_max_replicas_refuses_scale_deploy_and_surge_beyond_it(budget_lab):
    lab = budget_lab
    table = lab.budget(max_replicas=4).set_index("resource")
    assert table.loc["replicas per service", "allowed"] == 4
    lab.scale("echo", 4)  # up to the cap is fine
    with pytest.raises(LabError, match="would run 5 instances of echo; the lab's budget allows 4"):
        lab.scale("echo", 5)
    with pytest.raises(LabError, match="a rollout of echo with surge 1 would run 5 instances"):
        lab.rollout("echo", "v2", batch=1, surge=1)
    lab.scale("echo", 3)
    with pytest.raises(LabError, match="deploying 2 x echo v2 would run 5 instances"):
        lab.deploy("echo", "v2", 2)
    assert len(lab.instances("echo")) == 3 and set(lab.instances("echo")["version"]) == {"v1"}


def test_a_memory_budget_counts_limits(budget_lab):
    lab = budget_lab
    lab.budget(memory="700M")
    with pytest.raises(LabError, match="the lab's memory budget counts limits, and echo has "
                                       r"none: set one first, e.g. lab.limits\('echo', memory"):
        lab.scale("echo", 4)
    for name, size in (("echo", 96), ("routeguide", 96), ("web", 128)):
        lab.limits(name, memory=size)
    in_use = 3 * 96 + 2 * 96 + 1 * 128
    table = lab.budget().set_index("resource")
    assert table.loc["memory (MiB)", "in_use"] == in_use == 608
    with pytest.raises(LabError, match=r"scaling echo to 4 needs 704 MiB of memory limits in "
                                       r"all; the lab's budget allows 700 \(608 in use now\)"):
        lab.scale("echo", 4)
    with pytest.raises(LabError, match="these limits on echo needs 704 MiB"):
        lab.limits("echo", memory="128M")
    assert len(lab.instances("echo")) == 3
    assert set(lab.limits("echo")["memory_limit_mb"]) == {96}
