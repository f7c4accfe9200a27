"""Issue #11: the per-service lock holds across processes (kernels) and dies with its holder;
the declared replica counts survive several processes updating them at once."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from labkit import blocks
from labkit.backends.local import REPLICAS_FILE, LocalBackend
from labkit.errors import LabError
from labkit.servicelock import ServiceLock, in_progress, lock_path
from labkit.topology import SERVICES, service

pytestmark = pytest.mark.timeout(60)


def test_a_lock_held_by_another_kernel_refuses_naming_it_and_dies_with_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from labkit.servicelock import ServiceLock
        with ServiceLock(Path({str(tmp_path)!r}), "echo", "rollout to v2"):
            print("held", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        refusal = (rf"echo is busy with rollout to v2 \(in progress, started \d+ s ago by "
                   rf"pid {holder.pid} .*so scale to 2 cannot run now")
        with pytest.raises(LabError, match=refusal):
            ServiceLock(tmp_path, "echo", "scale to 2").__enter__()
        with ServiceLock(tmp_path, "web", "scale to 2"):
            pass  # another service is free
    finally:
        holder.kill()
        holder.wait(timeout=10)
    with ServiceLock(tmp_path, "echo", "scale to 2"):  # the killed holder's lock went with it
        assert "scale to 2" in (in_progress(lock_path(tmp_path, "echo")) or "")
    assert in_progress(lock_path(tmp_path, "echo")) is None, "released, no holder is named"


def test_one_thread_holding_a_lock_refuses_another_in_the_same_kernel(tmp_path):
    with ServiceLock(tmp_path, "echo", "canary of v2"), \
            pytest.raises(LabError, match="echo is busy with canary of v2"):
        ServiceLock(tmp_path, "echo", "heal").__enter__()


ROUNDS = 150


def _scale_repeatedly(state: str, name: str) -> None:
    backend = LocalBackend(Path(state))
    svc = service(name)
    for count in range(ROUNDS):
        backend.set_desired_replicas(svc, count % 9)
        assert backend.desired_replicas(svc) == count % 9, "a count read back changed"
    backend.set_desired_replicas(svc, 7)


def test_processes_declaring_counts_at_once_lose_none(tmp_path, monkeypatch):
    monkeypatch.setenv(blocks.BLOCK_ENV, "0")  # no block lookup: the backend only writes files
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_scale_repeatedly, args=(str(tmp_path), name))
               for name in SERVICES]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=45)
    assert [w.exitcode for w in workers] == [0] * len(workers), "a worker failed"
    declared = json.loads((tmp_path / REPLICAS_FILE).read_text())
    assert declared == dict.fromkeys(SERVICES, 7), "every service keeps its last count"
