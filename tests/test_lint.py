"""`make lint` as part of the suite: ruff and mypy, from this venv, over the whole repository."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: not resolved, a venv's python is a symlink


@pytest.mark.timeout(300)  # a cold mypy run takes about a minute on two cores
@pytest.mark.parametrize("command", [["ruff", "check", "."], ["mypy"]], ids=["ruff", "mypy"])
def test_lint_is_clean(command: list[str]) -> None:
    tool = BIN / command[0]
    assert tool.exists(), f"{tool} is missing: run `make setup` (it installs the dev extra)"
    done = subprocess.run([str(tool), *command[1:]], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, (
        f"`{' '.join(command)}` exited {done.returncode}:\n{done.stdout}{done.stderr}"
    )
