"""Issue #16, item 1: resource limits on a service's instances, enforced by cgroups (v1, as
on this machine and CI) or by the address-space rlimit fallback; a leak meets its limit and
the instance is restarted inside the same limits."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from labkit import limits
from labkit.errors import LabError
from labkit.topology import SERVICES, service
from labkit.waits import wait_for

from .helpers import declared_stack

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

ECHO = service("echo")
MIB = 2**20
cgroups_only = pytest.mark.skipif(limits.mechanism() != "cgroup v1",
                                  reason="cgroup v1 is not writable here (the rlimit test runs)")


@pytest.fixture
def echo_lab(lab):
    declared_stack(lab)
    yield lab
    declared_stack(lab)  # heal() removes the limits
    assert lab.limits("echo")["memory_limit_mb"].isna().all()


def group_of(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    raise AssertionError(f"pid {pid} has no {controller} group")


def restarted(lab, slot: int, old_pid: int) -> int:
    """The new pid once supervisord restarted the instance and it is routed again."""
    pid = wait_for(lambda: (p := lab.backend.instance_pid(ECHO, slot)) != old_pid and p,
                   what=f"echo-{slot} to be restarted", timeout=30)
    lab.backend.wait_routed(ECHO, [slot])
    return pid


@cgroups_only
def test_cgroups_cap_memory_and_cpu_and_a_restart_stays_inside(echo_lab):
    lab = echo_lab
    frame = lab.limits("echo", memory="96M", cpu=0.2)
    assert set(frame["mechanism"]) == {"cgroup v1"} and frame["cpu_enforced"].all()
    assert (frame["memory_limit_mb"] == 96).all() and (frame["cpu_limit"] == 0.2).all()
    status = lab.status().set_index("component")
    echo_rows = status[status["kind"] == "echo"]
    assert (echo_rows["memory_limit_mb"] == 96).all() and (echo_rows["cpu_limit"] == 0.2).all()
    assert set(echo_rows["limits_by"]) == {"cgroup v1"} and (echo_rows["memory_mb"] > 20).all()
    web = status.loc["web-1"]
    assert web["limits_by"] == "" and pd.isna(web["memory_limit_mb"]), "web has no limits"
    pid = lab.backend.instance_pid(ECHO, 1)
    memory_group = Path("/sys/fs/cgroup/memory") / group_of(pid, "memory").lstrip("/")
    cpu_group = Path("/sys/fs/cgroup/cpu") / group_of(pid, "cpu").lstrip("/")
    assert memory_group.name == "echo-1" == cpu_group.name
    assert int((memory_group / "memory.limit_in_bytes").read_text()) == 96 * MIB
    assert int((cpu_group / "cpu.cfs_quota_us").read_text()) == 20_000

    # a burn of a whole core is throttled to the quota
    throttled = int(dict(line.split() for line in (cpu_group / "cpu.stat").read_text()
                         .splitlines())["nr_throttled"])
    lab.fault("echo", 1, cpu_burn=1.0)
    process = psutil.Process(pid)
    before, began = process.cpu_times(), time.monotonic()
    time.sleep(2)
    after = process.cpu_times()
    share = (after.user + after.system - before.user - before.system) / (time.monotonic() - began)
    stat = dict(line.split() for line in (cpu_group / "cpu.stat").read_text().splitlines())
    assert int(stat["nr_throttled"]) > throttled, stat
    assert lab.limits("echo").set_index("instance").loc["echo-1", "cpu_throttled_s"] > 0
    assert share <= 0.2 * 1.3, f"echo-1 used {share:.0%} of a core under a 20% quota"

    # a leak meets the memory limit: the kernel kills it, supervisord restarts it inside
    lab.fault("echo", 1, cpu_burn=0, leak_mb_per_s=50)
    new_pid = restarted(lab, 1, pid)
    assert group_of(new_pid, "memory").endswith("/echo-1"), "the restart left its group"
    assert group_of(new_pid, "cpu").endswith("/echo-1")
    assert lab.faults().query("instance == 'echo-1'").empty, "a restart starts clean"


def soft_address_space(pid: int) -> str:
    """From /proc: root reads it for any process (prlimit(2) of another user's process needs
    CAP_SYS_RESOURCE, which a container's root may lack; the programs run as another user
    under root, see labkit.privileges)."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max address space"):
            return line.split()[3]
    raise AssertionError(f"no address-space line in /proc/{pid}/limits")


def test_the_rlimit_fallback_caps_memory_and_says_cpu_is_not_enforced(echo_lab, monkeypatch):
    monkeypatch.setenv(limits.MECHANISM_ENV, "rlimit")
    lab = echo_lab
    frame = lab.limits("echo", memory="96M", cpu=0.5)
    assert set(frame["mechanism"]) == {"rlimit"} and not frame["cpu_enforced"].any()
    assert frame["cpu_throttled_s"].isna().all(), "no cgroup: no throttling to report"
    pid = lab.backend.instance_pid(ECHO, 2)
    assert soft_address_space(pid) != "unlimited"

    # allocations beyond the limit fail: the instance exits, and restarts with the limit
    lab.fault("echo", 2, leak_mb_per_s=50)
    new_pid = restarted(lab, 2, pid)
    assert soft_address_space(new_pid) != "unlimited"
    assert "out of memory: exiting" in lab.backend.log_tail("echo-2", 40)


def start_files(lab) -> dict[str, str]:
    """What each echo instance's start sources (its limits)."""
    return {p.name: p.read_text() for p in (lab.backend.state / "limits").glob("echo-*.sh")}


def test_a_limit_below_what_an_instance_uses_is_refused_and_nothing_changes(echo_lab):
    lab = echo_lab
    before = start_files(lab)
    lab.fault("echo", 3, leak_mb_per_s=40)
    wait_for(lambda: lab.limits("echo").set_index("instance").loc["echo-3", "memory_mb"] > 110,
             what="echo-3 to hold more than 110 MiB", timeout=10)
    with pytest.raises(LabError, match=r"below what running instances use \(echo-3 uses"):
        lab.limits("echo", memory=100)
    assert lab.limits("echo")["memory_limit_mb"].isna().all()
    assert start_files(lab) == before


def test_heal_restores_the_limits_the_topology_declares(echo_lab, monkeypatch):
    lab = echo_lab
    declared = dataclasses.replace(ECHO, limits=limits.Limits(memory_mb=200, cpu=0.5))
    monkeypatch.setitem(SERVICES, "echo", declared)
    lab.limits("echo", memory="96M", cpu=None)
    assert (lab.limits("echo")["memory_limit_mb"] == 96).all()
    lab.heal()
    frame = lab.limits("echo")
    assert (frame["memory_limit_mb"] == 200).all() and (frame["cpu_limit"] == 0.5).all(), frame
    if limits.mechanism() == "cgroup v1":
        pid = lab.backend.instance_pid(ECHO, 1)
        group = Path("/sys/fs/cgroup/memory") / group_of(pid, "memory").lstrip("/")
        assert int((group / "memory.limit_in_bytes").read_text()) == 200 * MIB
    monkeypatch.undo()  # the fixture's heal then restores the shipped topology's (none)
