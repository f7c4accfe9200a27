"""The lab outlives its supervisor: supervisord SIGKILLed under load, then an instance
crashed while nobody supervises it. The gateway keeps serving (its log is a file, not a pipe
to the dead supervisord), status and scale say what happened and the fix, the block stays
the lab's, and `labkit up` supervises everything again without failing a request."""

from __future__ import annotations

import time

import httpx
import psutil
import pytest

from labkit import block_claims, blocks, cli
from labkit.backends.base import ORPHANED
from labkit.chaos import TARGET, Snapshot
from labkit.errors import LabError
from labkit.lab import Lab
from labkit.topology import INFRA_COMPONENTS, LEASE_TTL_SECONDS, infra, service
from labkit.waits import wait_for

pytestmark = [pytest.mark.live, pytest.mark.timeout(210)]

RPS = 50
LOAD_S = 90.0  # covers the crash, the checks (~9 s) and `up` (measured 24-40 s; ~50 s on a busy CI)
ECHO = service("echo")
CRASHED = 2
LEASE_WAIT_S = LEASE_TTL_SECONDS + 3  # a crashed instance's lease expires, then Traefik drops it


def test_the_lab_outlives_its_supervisor_and_up_supervises_it_again(chaos_lab: Lab, capsys):
    lab, backend = chaos_lab, chaos_lab.backend
    block, state = backend.block, backend.state
    before = Snapshot.take(lab)
    running = {p["name"] for p in backend.processes() if p["statename"] == "RUNNING"}
    traffic = lab.start_load(TARGET, rps=RPS, seconds=LOAD_S, timeout=2)
    time.sleep(1)
    supervisor = psutil.Process(backend.supervisor.pid())
    supervisor.kill()
    supervisor.wait(timeout=5)

    orphans = {o["name"]: o["pid"] for o in backend.orphans()}
    assert set(orphans) == running
    crashed = psutil.Process(orphans[ECHO.instance_id(CRASHED)])
    crashed_at = time.time()
    crashed.kill()
    crashed.wait(timeout=5)
    # Traefik logs the crash (health check, then the server leaving with its lease): on a
    # pipe to the dead supervisord that line killed it (SIGPIPE); to its file it costs nothing
    gone = f"http://{ECHO.endpoint(CRASHED).address}"
    wait_for(lambda: gone not in lab.gateway.servers("echo"),
             what=f"the gateway to drop {gone}", timeout=LEASE_WAIT_S)
    dropped_at = time.time()
    time.sleep(1)  # Traefik's next log lines
    with httpx.Client(base_url=infra().gateway.url, headers={"Host": "echo.localhost"},
                      timeout=2) as client:
        assert [client.get("/").status_code for _ in range(20)] == [200] * 20

    # status and scale name the state and the fix; nothing else is refused
    frame = lab.status()
    assert set(frame["state"]) == {ORPHANED}
    assert set(frame["component"]) == running - {ECHO.instance_id(CRASHED)}
    assert cli.main(["status"]) == 0
    shown = capsys.readouterr().out
    assert "lost its supervisor" in shown and "'labkit up'" in shown and ORPHANED in shown
    with pytest.raises(LabError, match="lost its supervisor.*'labkit up'"):
        lab.scale("echo", 3)
    # the block's claim ended with supervisord, but no other lab may take the block while
    # its addresses are busy
    assert block_claims.holder(block) is None
    assert block_claims.first_free() != block

    started = time.time()
    lab.up()
    adopted_at = time.time()
    load = traffic.result()
    assert adopted_at - load.attrs["started_at"] < LOAD_S, "the load should outlast `up`"

    # supervised again, in the same block, with the crashed instance back
    assert backend.is_up() and (lab.status()["state"] == "RUNNING").all()
    assert {p["name"] for p in backend.processes() if p["statename"] == "RUNNING"} == running
    assert blocks.recorded(state) == block
    assert f"pid {backend.supervisor.pid()}" in (block_claims.holder(block) or "")
    for component in INFRA_COMPONENTS:
        assert backend.supervisor.info(f"{component}:{component}")["pid"] != orphans[component]
    before.wait_intact(lab)

    # no failed request but the crashed instance's: all began before the gateway dropped it
    failed = load[load["status"] != 200]
    t0 = load.attrs["started_at"]
    print(f"up took {adopted_at - started:.1f} s; {len(failed)} of {len(load)} failed, "
          f"between {failed['start'].min() + t0 - crashed_at:.2f} and "
          f"{failed['start'].max() + t0 - crashed_at:.2f} s after the crash")
    shown = failed[["start", "end", "status", "error"]].assign(
        after_crash=failed["start"] + t0 - crashed_at, after_up=failed["start"] + t0 - started)
    assert (failed["end"] + t0 >= crashed_at).all(), shown.to_string()
    assert (failed["start"] + t0 <= dropped_at).all(), shown.to_string()
    assert (load[load["start"] + t0 > dropped_at]["status"] == 200).all()
