"""Where things live: the repository, the executables, and the state folder."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .errors import LabError

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: traefik, etcd and supervisord come from pip

NOTEBOOKS = REPO / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"  # worked solutions of the checked exercises
EXECUTED = REPO / "tests" / "output"  # the suite's executed notebooks (tests/test_notebooks.py)


def notebooks() -> list[Path]:
    """The course's notebooks, in order (NN-name.ipynb: not notebooks/README.md)."""
    return sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))


def solutions() -> list[Path]:
    """The worked solutions, one notebook per course notebook (named like it)."""
    return sorted(SOLUTIONS.glob("[0-9][0-9]-*.ipynb"))


def executed_copy(notebook: Path, variant: str = "default", folder: Path = EXECUTED) -> Path:
    """Where the suite keeps `notebook` as it ran it (variant: default, second or off)."""
    return folder / f"{notebook.stem}-{variant}.ipynb"


OS_PACKAGES = ("prometheus", "wrk")  # what pip cannot install; wrk only sharpens a benchmark


def install_hint(packages: tuple[str, ...] = ("prometheus",)) -> str:
    """The one message saying how to install OS packages without root in our scripts
    (printed by `make setup` as a normal user, and by `labkit up` when Prometheus is missing)."""
    names = " ".join(packages)
    return (f"install {', '.join(packages)} with one of:\n"
            f"  sudo apt-get install -y --no-install-recommends {names}   # Debian / Ubuntu\n"
            f"  brew install {names}   # macOS\n"
            f"  conda install -c conda-forge {names}   # conda (no root needed)\n"
            f"or run 'make setup' as root, which installs them with apt")


def state_dir() -> Path:
    """Generated configs, logs and data: one git-ignored folder, `.lab/` by default."""
    return Path(os.environ.get("LABKIT_STATE_DIR", REPO / ".lab")).resolve()


def executable(name: str) -> str:
    """Absolute path of a binary the stack needs, preferring the venv's copy."""
    candidate = BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    hint = install_hint((name,)) if name in OS_PACKAGES else "run 'make setup'"
    raise LabError(f"executable {name!r} not found in {BIN} or on PATH; {hint}")
