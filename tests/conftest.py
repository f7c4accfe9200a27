"""The live stack for integration and notebook tests: started once per test process, stopped
at the end.

The suite runs in parallel (pytest-xdist): each worker gets a lab of its own, in its own
address block and state folder (`.lab-test/<worker>`), set in the environment before any test
runs so that notebook kernels and `labkit` subprocesses find the same lab. The blocks are
picked free by the controlling process, so a learner's own lab (usually block 0) keeps
running beside the suite.
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
_GIVEN = pytest.StashKey[set]()  # the blocks handed to workers so far
SPARE_BLOCK_ENV = "LABKIT_TEST_SPARE_BLOCK"  # a second lab's block (test_isolation)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _is_controller(config: pytest.Config) -> bool:
    """The xdist process that hands tests to workers (it runs none itself)."""
    return not _is_worker(config) and getattr(config.option, "dist", "no") != "no"


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # node: xdist's WorkerController
    """Give each worker two blocks no lab holds and no other worker got: one for its lab,
    a spare for tests that start a second lab (test_isolation)."""
    given = node.config.stash.setdefault(_GIVEN, set())
    for name in ("lab_block", "spare_block"):
        block = block_claims.first_free(excluding=given)
        given.add(block)
        node.workerinput[name] = block


def pytest_configure(config: pytest.Config) -> None:
    if _is_controller(config):
        return
    if _is_worker(config):
        name = os.environ["PYTEST_XDIST_WORKER"]
        block, spare = config.workerinput["lab_block"], config.workerinput["spare_block"]
    else:
        name, block = "main", block_claims.first_free()
        spare = block_claims.first_free(excluding={block})
    os.environ[blocks.BLOCK_ENV] = str(block)
    os.environ[SPARE_BLOCK_ENV] = str(spare)
    os.environ["LABKIT_STATE_DIR"] = str(TEST_STATE / name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long runs first (notebooks, longest first, by the `run_seconds` measured into each
    one's metadata; then the other live tests), so that workers share them out from the start
    and the short tests fill the gaps at the end."""
    def order(item: pytest.Item) -> tuple[int, int]:
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
