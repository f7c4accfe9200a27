"""Every notebook is a test: papermill runs it against the live stack; its asserts decide.

Each notebook runs three ways, read from its metadata (`metadata.lab`):
- `default`: its own parameters;
- `second`: another parameter set (`second`), so no check only holds for one choice;
- `off`: its pattern switched off (`switch`, a boolean parameter, set to False); the
  notebook must then fail **on its own check**: an AssertionError whose message contains
  `fails_with`. A check that still passes without the pattern proves nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import papermill
import pytest
from integration.helpers import declared_stack

from labkit import paths
from labkit.topology import SERVICES

NOTEBOOKS = paths.notebooks()


def lab_metadata(notebook: Path) -> dict:
    return json.loads(notebook.read_text())["metadata"].get("lab", {})


def variants() -> list:
    cases = []
    for notebook in NOTEBOOKS:
        meta = lab_metadata(notebook)
        cases.append(pytest.param(notebook, "default", id=f"{notebook.stem}-default"))
        if "second" in meta:
            cases.append(pytest.param(notebook, "second", id=f"{notebook.stem}-second"))
        if "switch" in meta:
            cases.append(pytest.param(notebook, "off", id=f"{notebook.stem}-off"))
    return cases


def execute(notebook: Path, variant: str, parameters: dict) -> Path:
    paths.EXECUTED.mkdir(exist_ok=True)  # git-ignored, for inspection (and the course site)
    executed = paths.executed_copy(notebook, variant)
    papermill.execute_notebook(
        str(notebook),
        str(executed),
        parameters=parameters,
        cwd=str(notebook.parent),
        kernel_name="python3",
        execution_timeout=240,
        progress_bar=False,
    )
    return executed


def images(executed: Path) -> int:
    """How many plots the executed copy shows."""
    cells = json.loads(executed.read_text())["cells"]
    return sum("image/png" in output.get("data", {})
               for cell in cells for output in cell.get("outputs", []))


@pytest.mark.live
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("notebook", "variant"), variants())
def test_notebook(lab, notebook: Path, variant: str) -> None:
    meta = lab_metadata(notebook)
    if variant in ("default", "second"):
        executed = execute(notebook, variant, {} if variant == "default" else meta["second"])
        # every pattern notebook plots its result (the tour only points at the UIs)
        assert notebook.stem.startswith("00-") or images(executed) > 0, (
            f"{executed.name} shows no plot: is matplotlib's inline backend off "
            "(MPLBACKEND set in the test's environment)?")
    else:
        with pytest.raises(papermill.PapermillExecutionError) as failure:
            execute(notebook, variant, {meta["switch"]: False})
        error = failure.value
        assert error.ename == "AssertionError" and meta["fails_with"] in error.evalue, (
            f"with {meta['switch']}=False the notebook should fail its own check "
            f"({meta['fails_with']!r}), it failed with {error.ename}: {error.evalue}"
        )
    restore(lab)


@pytest.mark.live
@pytest.mark.timeout(300)
@pytest.mark.parametrize("notebook", paths.solutions(), ids=lambda p: f"solutions-{p.stem}")
def test_solution(lab, notebook: Path) -> None:
    """Each worked solution runs its exercises' checks before solving them (each must say
    what is missing) and after (each must pass): every checked exercise is solvable."""
    execute(notebook, "solutions", {})
    restore(lab)


def restore(lab) -> None:
    """Whatever a failed run left behind (faults, policies, counts): the next test starts
    clean."""
    declared_stack(lab)
    for name in SERVICES:
        lab.policies.clear(name)
    if lab.security.mtls():  # like a policy, heal() leaves it (notebook 16 switches it)
        lab.security.mtls(False)


def test_every_pattern_notebook_has_a_switch_and_a_second_parameter_set() -> None:
    for notebook in NOTEBOOKS:
        if notebook.stem.startswith("00-"):
            continue  # the tour teaches no single pattern
        meta = lab_metadata(notebook)
        assert {"switch", "fails_with", "second"} <= set(meta), (
            f"{notebook.name}: metadata.lab needs switch, fails_with and second, has {meta}"
        )
        # as papermill reads the parameters cell: one name per line (it cannot read
        # `a, b = 1, 2`, nor some comments, and then warns of an "unknown parameter")
        parameters = papermill.inspect_notebook(str(notebook))
        for name in (meta["switch"], *meta["second"]):
            assert name in parameters, (
                f"{notebook.name}: papermill finds no {name} in its parameters cell, only "
                f"{sorted(parameters)}")
