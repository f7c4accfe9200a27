"""Two labs on one machine: nothing done to one appears in the other.

This worker's lab (fixture `lab`) runs beside a second lab, which takes the first free block
as any lab does, driven by a separate process, as a second learner would drive theirs.
Each check also looks at the second lab, where the change must be visible: a check that
found nothing anywhere would prove nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from labkit.topology import infra
from labkit.waits import wait_for

from .helpers import declared_stack

# The other learner: scale, fault, a policy, a new version and a split, one traced request.
OTHER_LEARNER = """
import json, sys, uuid
import httpx, labkit
from labkit.topology import infra
from labkit.waits import wait_for

with labkit.connect() as lab:
    lab.scale("echo", 4)
    lab.fault("echo", 1, latency="20ms")
    lab.policies.retry("echo", attempts=2)
    lab.deploy("echo", "v2", 1)
    lab.shift("echo", {"v1": 50, "v2": 50})
    request_id = uuid.uuid4().hex
    answer = httpx.get(f"{infra().gateway.url}/", timeout=5,
                       headers={"Host": "echo.localhost", "X-Request-Id": request_id})
    answer.raise_for_status()
    wait_for(lambda: len(lab.logs(request_id=request_id)) > 0, what="its request's logs",
             timeout=20)
    targets = 'count by (instance) (up{job="services", service="echo"})'
    wait_for(lambda: len(lab.metrics(targets)) >= 5, what="5 echo targets scraped", timeout=20)
    print(json.dumps({
        "block": lab.backend.block,
        "addresses": sorted(lab.registry.instances("echo")["address"]),
        "faults": len(lab.faults()),
        "policies": sorted(lab.policies.policies("echo")["policy"]),
        "versions": sorted(lab.versions("echo").query("running > 0")["version"]),
        "request_id": request_id,
        "scraped": sorted(lab.metrics(targets)["instance"]),
    }))
"""


def run_other(env: dict[str, str], code: str, timeout: float = 120) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"the other lab failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.live
@pytest.mark.timeout(240)
def test_two_labs_side_by_side_share_nothing(lab, state_folder: Path) -> None:
    other_env = {**os.environ, "LABKIT_STATE_DIR": str(state_folder)}
    down = [sys.executable, "-m", "labkit.cli", "down"]
    declared_stack(lab)
    try:
        seen = json.loads(run_other(other_env, OTHER_LEARNER).splitlines()[-1])
        # the other lab is in its own block, and each change took effect there
        assert seen["block"] != lab.backend.block
        assert len(seen["addresses"]) == 5 and all(
            a.startswith(f"127.{seen['block']}.") for a in seen["addresses"])
        assert seen["faults"] >= 1 and "retry" in " ".join(seen["policies"])
        assert seen["versions"] == ["v1", "v2"] and len(seen["scraped"]) >= 5

        # ... and none of it in this one
        mine = lab.registry.instances("echo")
        assert len(mine) == 3 and not set(mine["address"]) & set(seen["addresses"])
        assert all(a.startswith(f"127.{lab.backend.block}.") for a in mine["address"])
        assert lab.faults().empty and lab.policies.policies("echo").empty
        assert list(lab.versions("echo").query("running > 0")["version"]) == ["v1"]
        assert not any(f"127.{seen['block']}." in s for s in lab.gateway.servers("echo"))
        assert lab.logs(request_id=seen["request_id"]).empty
        # Prometheus may still list an instance an earlier test stopped, for a scrape or two
        scraped = wait_for(
            lambda: (found if len(found := lab.metrics(
                'count by (instance) (up{job="services", service="echo"})')) == 3 else None),
            what="Prometheus to scrape this lab's 3 echo instances", timeout=15)
        assert not set(scraped["instance"]) & set(seen["scraped"])

        # `labkit down` there stops that lab only
        pids = lab.status().set_index("component")["pid"]
        subprocess.run(down, env=other_env, check=True, timeout=60, capture_output=True)
        # a component restarting for its own reasons is STARTING for a second (CI saw one,
        # once): a restart caused by the other lab's `down` would show as a new pid
        after = wait_for(lambda: (f if ((f := lab.status())["state"] == "RUNNING").all()
                                  else None),
                         what="every component of this lab RUNNING", timeout=15,
                         diagnose=lambda: lab.status()[["component", "state", "pid",
                                                        "uptime_s"]].to_string())
        restarted = after.set_index("component")["pid"].compare(pids)
        assert restarted.empty, f"restarted while the other lab went down:\n{restarted}"
        answer = httpx.get(f"{infra().gateway.url}/", headers={"Host": "echo.localhost"},
                           timeout=5)
        assert answer.status_code == 200
    finally:
        subprocess.run(down, env=other_env, timeout=60, capture_output=True, check=False)
