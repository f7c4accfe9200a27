"""A Binder-like environment, built once per session and shared by the Binder and hub tests
(see binderenv)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .binderenv import (
    BUILD_TIMEOUT,
    ROOT,
    BinderEnv,
    learner_python,
    learner_user,
    stop_processes_of,
    tracked_files,
)


@pytest.fixture(scope="session")
def binder_env() -> Iterator[BinderEnv]:
    user = learner_user()
    base = Path(tempfile.mkdtemp(prefix="mplab-binder-"))
    base.chmod(0o755)
    home = base / "home"
    built = BinderEnv(user, home, home / "env")
    try:
        for name in tracked_files():
            (built.repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, built.repo / name)
        shutil.chown(home, user, user)
        subprocess.run(["chown", "-R", f"{user}:", str(home)], check=True, timeout=60)
        built.run([learner_python(user), "-m", "venv", str(built.venv)], timeout=120)
        built.run([str(built.venv / "bin" / "pip"), "install", "--quiet", "-r",
                   "binder/requirements.txt"], timeout=BUILD_TIMEOUT)
        built.run(["binder/postBuild"], timeout=120)
        yield built
    finally:
        stop_processes_of(user, base)
        shutil.rmtree(base, ignore_errors=True)
