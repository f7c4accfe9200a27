"""Where things live: the repository, the executables, and the state folder."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from .errors import LabError

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: traefik, etcd and supervisord come from pip

PROMETHEUS_INSTALL_HINT = (
    "install Prometheus with one of: 'sudo apt-get install -y --no-install-recommends "
    "prometheus' (Debian/Ubuntu), 'brew install prometheus' (macOS), "
    "'conda install -c conda-forge prometheus'; or run 'make setup', which does it when root"
)


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
    hint = PROMETHEUS_INSTALL_HINT if name == "prometheus" else "run 'make setup'"
    raise LabError(f"executable {name!r} not found in {BIN} or on PATH; {hint}")
