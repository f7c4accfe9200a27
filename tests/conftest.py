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
from pathlib import Path

import pytest

from labkit import block_claims, blocks
from labkit.lab import Lab

ROOT = Path(__file__).resolve().parent.parent
TEST_STATE = ROOT / ".lab-test"
_CLAIMS = pytest.StashKey[list]()  # the private blocks this process holds for the session
PRIVATE_BLOCK_ENV = "LABKIT_TEST_PRIVATE_BLOCK"


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
