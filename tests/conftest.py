"""The live stack for integration and notebook tests: started once per test process, stopped
at the end.

The suite runs in parallel (pytest-xdist): each worker gets a lab of its own, in its own
state folder (`.lab-test/<worker>`, set in the environment before any test runs, so that
notebook kernels and `labkit` subprocesses find the same lab) and its own address block, which
its `up` claims like any lab's: the first free one, so a learner's own lab (usually block 0)
keeps running beside the suite, and a lab starting elsewhere meanwhile cannot collide with it.

Tests that start servers of their own (a private etcd, Traefik, telemetry store) put them in a
*private block* per worker, claimed by the controlling process for the whole session so that no
lab takes it, in subnets 4 to 9, which no lab uses (see `services.support.worker_host`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from labkit import block_claims, blocks, links
from labkit.errors import LabError
from labkit.lab import Lab
from labkit.processes import stop_child
from labkit.waits import wait_for

ROOT = Path(__file__).resolve().parent.parent
TEST_STATE = ROOT / ".lab-test"
_CLAIMS = pytest.StashKey[list]()  # the private blocks this process holds for the session
PRIVATE_BLOCK_ENV = "LABKIT_TEST_PRIVATE_BLOCK"
# the suite's Jupyter servers run under a base URL, as on a hub, to prove links are relative
TEST_BASE_URL = "/user/learner/"


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_controller(config: pytest.Config) -> bool:
    """The xdist process that hands tests to workers (it runs none itself)."""
    return not _is_worker(config) and getattr(config.option, "dist", "no") != "no"


def _claim_private_block(config: pytest.Config) -> int:
    """A block held by this process until the session ends (pytest_unconfigure)."""
    claim = block_claims.claim_first_free(TEST_STATE / "private")
    config.stash.setdefault(_CLAIMS, []).append(claim)
    return claim.block


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # node: xdist's WorkerController
    node.workerinput["private_block"] = _claim_private_block(node.config)


def pytest_configure(config: pytest.Config) -> None:
    if _is_controller(config):
        return
    if _is_worker(config):
        name, private = os.environ["PYTEST_XDIST_WORKER"], config.workerinput["private_block"]
    else:
        name, private = "main", _claim_private_block(config)
    os.environ.pop(blocks.BLOCK_ENV, None)  # each lab takes the first free block at `up`
    os.environ[PRIVATE_BLOCK_ENV] = str(private)
    os.environ["LABKIT_STATE_DIR"] = str(TEST_STATE / name)
    os.environ.setdefault(links.BASE_URL_ENV, TEST_BASE_URL)


def pytest_unconfigure(config: pytest.Config) -> None:
    for claim in config.stash.get(_CLAIMS, []):
        claim.release()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long runs first (the Binder and hub runs; notebooks, longest first, by the
    `run_seconds` measured into each one's metadata; then the other live tests), so that
    workers share them out from the start and the short tests fill the gaps at the end."""
    def order(item: pytest.Item) -> tuple[int, int]:
        if item.get_closest_marker("binder") or item.get_closest_marker("hub"):
            return 0, -600  # minutes: a fresh environment, then labs of their own
        params = getattr(item, "callspec", None)
        notebook = params.params.get("notebook") if params else None
        if isinstance(notebook, Path):
            lab = json.loads(notebook.read_text())["metadata"].get("lab", {})
            return 0, -lab.get("run_seconds", 0)
        return (1 if item.get_closest_marker("live") else 2), 0

    items.sort(key=order)  # stable: each group keeps its order


@pytest.fixture(scope="session")
def session_lab():
    lab = Lab()
    if lab.backend.is_up():  # left running by an interrupted run: start from a clean lab
        lab.down()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def lab(session_lab):
    """The running stack; `up` is idempotent, so this is cheap when it already runs."""
    session_lab.up()
    return session_lab


@pytest.fixture
def state_folder() -> Iterator[Path]:
    """A fresh state folder for another lab, under TEST_STATE rather than tmp_path: run by
    root, a lab's programs run as an unprivileged user (labkit.privileges), who may not enter
    pytest's owner-only temporary folders (/tmp/pytest-of-root is 0700)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    folder = TEST_STATE / f"other-{worker}-{secrets.token_hex(4)}"
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class JupyterServer:
    origin: str  # http://127.0.0.1:<port>
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def url(self, path: str) -> str:
        """`path` (a link as labkit shows it, under the base URL) on this server."""
        return f"{self.origin}{path}"

    @property
    def lab_url(self) -> str:
        return self.url(f"{links.jupyter_base_url()}lab?token={self.token}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_jupyter(name: str, **env: str) -> Iterator[JupyterServer]:
    """A plain JupyterLab server with the repository's configuration (JUPYTER_CONFIG_PATH, as
    make lab and binder/start set it), under the base URL, serving a copy of notebooks/. The
    lab it proxies to is this worker's (its LABKIT_STATE_DIR), unless `env` says."""
    port, token = _free_port(), secrets.token_hex(16)
    folder = TEST_STATE / f"jupyter-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{name}"
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "server.log"
    # a copy of the notebooks: a browser's Run All autosaves outputs into the files it runs
    shutil.rmtree(folder / "notebooks", ignore_errors=True)
    shutil.copytree(ROOT / "notebooks", folder / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    # each cell rendered (JupyterLab windows long notebooks), no kernel dialog
    settings = folder / "user-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none", "autoStartDefaultKernel": True}))
    env = {**os.environ, **env, "JUPYTER_CONFIG_PATH": str(ROOT / "jupyter"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CI", None)  # a learner's server: under CI=true labkit would draw nothing live
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.base_url={links.jupyter_base_url()}", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={folder / 'notebooks'}",
        f"--LabApp.app_settings_dir={ROOT / 'jupyter' / 'lab-settings'}",
        # JupyterLab's user settings and workspaces: this run's own, not the learner's
        f"--LabApp.user_settings_dir={folder / 'user-settings'}",
        f"--LabApp.workspaces_dir={folder / 'workspaces'}",
        "--allow-root",
    ]
    with log.open("w") as output:
        server = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    found = JupyterServer(origin=f"http://127.0.0.1:{port}", token=token)

    def ready() -> bool:
        if server.poll() is not None:
            raise LabError(f"JupyterLab exited with {server.returncode}: "
                           f"{log.read_text()[-2000:]}")
        status = found.url(f"{links.jupyter_base_url()}api/status")
        return httpx.get(status, headers=found.headers).status_code == 200

    try:
        wait_for(ready, what=f"JupyterLab on port {port}", timeout=60, interval=0.25,
                 diagnose=lambda: log.read_text()[-2000:], hint="a slow machine?")
        yield found
    finally:
        stop_child(server, grace=15)


@pytest.fixture(scope="session")
def jupyter_server() -> Iterator[JupyterServer]:
    """This worker's JupyterLab server, proxying to its lab."""
    with running_jupyter("lab") as server:
        yield server


@pytest.fixture
def start_jupyter():
    """`running_jupyter`, for a test that needs a server of its own (another lab's)."""
    return running_jupyter
