"""Binder: repo2docker accepts the repository, and an emulated Binder run passes.

The emulated run does what a Binder container does, without Docker: as a user who is not root,
in an environment built only from `binder/` (conftest.binder_env), `binder/start jupyter lab`
brings the lab up with the server; notebooks 00 and 01 run against it and pass; a second start
finds the same lab; stopping the server stops the lab.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from labkit.waits import wait_for

from .binderenv import BinderEnv, free_port

ROOT = Path(__file__).resolve().parent.parent.parent
REPO2DOCKER = Path(sys.executable).parent / "jupyter-repo2docker"
NOTEBOOKS = ("00-tour", "01-load-balancing")


def test_repo2docker_accepts_the_repository() -> None:
    done = subprocess.run(
        [str(REPO2DOCKER), "--no-build", "--debug", "--user-id", "1000", "--user-name",
         "jovyan", str(ROOT)], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"repo2docker refused the repository:\n{done.stderr[-3000:]}"
    dockerfile = done.stdout
    order = [dockerfile.find(step) for step in (
        "install --yes --no-install-recommends prometheus",  # binder/apt.txt
        "COPY --chown=1000:1000 src/ ${REPO_DIR}/",  # the repository, before pip: `-e .`
        'pip install --no-cache-dir -r "binder/requirements.txt"',
        "RUN ./binder/postBuild",
        'ENV R2D_ENTRYPOINT="${REPO_DIR}/binder/start"',
    )]
    assert -1 not in order and order == sorted(order), (
        f"repo2docker's Dockerfile lacks a step or runs them out of order {order}:\n{dockerfile}")
    assert "python=3.11" in done.stderr + dockerfile, "binder/runtime.txt asks for Python 3.11"


def supervisord_pids(state: Path) -> list[int]:
    return [p.pid for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "supervisord"
            and str(state / "supervisord.conf") in (p.info["cmdline"] or [])]


@pytest.mark.binder
@pytest.mark.timeout(900)
def test_an_emulated_binder_run(binder_env: BinderEnv, tmp_path: Path) -> None:
    port, token = free_port(), "binder-test"
    state = binder_env.repo / ".lab"  # the default state folder: <repo>/.lab
    url = f"http://127.0.0.1:{port}"
    logs = Path(binder_env.home)
    server = binder_env.popen(
        ["binder/start", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", f"--IdentityProvider.token={token}"],
        logs / "server.log")
    try:
        wait_for(lambda: httpx.get(f"{url}/lab?token={token}", timeout=2).status_code == 200,
                 what="JupyterLab behind binder/start", timeout=180,
                 diagnose=lambda: (logs / "server.log").read_text()[-3000:])
        (lab_pid,) = supervisord_pids(state)
        assert psutil.Process(lab_pid).username() == binder_env.user, "the lab runs as root"

        second = binder_env.run(["binder/start", "labkit", "status"], timeout=120)
        assert "belongs to the server" in second and f"pid {server.pid}" in second, second
        assert supervisord_pids(state) == [lab_pid], "a second start started a second lab"

        out = binder_env.home / "out"
        for name in NOTEBOOKS:
            binder_env.run(
                ["papermill", f"notebooks/{name}.ipynb", f"{out}-{name}.ipynb", "--cwd",
                 "notebooks", "-k", "python3", "--no-progress-bar"], timeout=400)

        server.send_signal(signal.SIGTERM)  # the server stops: so does its lab
        server.wait(timeout=30)
        wait_for(lambda: not psutil.pid_exists(lab_pid), what="the lab to stop with its server",
                 timeout=60, diagnose=lambda: (state / "owner.log").read_text())
        assert not (state / "supervisor.sock").exists(), "the lab's socket outlived it"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
