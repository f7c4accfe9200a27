"""A Binder-like environment (see binderenv), built once per test run and shared by the Binder
and hub tests: the first xdist worker that needs it builds it, a worker that needs it meanwhile
waits for it, and the last one done with it removes it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.waits import wait_for

from .binderenv import (
    BUILD_TIMEOUT,
    ROOT,
    BinderEnv,
    learner_python,
    learner_user,
    stop_processes_of,
    tracked_files,
)


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold `lock` (one worker at a time), waiting while another worker builds."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)

    def taken() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    try:
        wait_for(taken, what="another worker to build the Binder environment", interval=1,
                 timeout=BUILD_TIMEOUT + 300)
        yield
    finally:
        os.close(fd)


def build(built: BinderEnv) -> None:
    """What repo2docker does: the repository in the user's home, requirements.txt, postBuild."""
    for name in tracked_files():
        (built.repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, built.repo / name)
    subprocess.run(["chown", "-R", f"{built.user}:", str(built.home)], check=True, timeout=60)
    built.run([learner_python(built.user), "-m", "venv", str(built.venv)], timeout=120)
    built.run([str(built.venv / "bin" / "pip"), "install", "--quiet", "-r",
               "binder/requirements.txt"], timeout=BUILD_TIMEOUT)
    built.run(["binder/postBuild"], timeout=120)


@pytest.fixture(scope="session")
def binder_env(testrun_uid: str) -> Iterator[BinderEnv]:
    base = Path(tempfile.gettempdir()) / f"mplab-binder-{testrun_uid}"
    lock, users = base.with_suffix(".lock"), base.with_suffix(".users")
    built = BinderEnv(learner_user(), base / "home", base / "home" / "env")
    with exclusive(lock):
        if not (base / "built").exists():
            shutil.rmtree(base, ignore_errors=True)
            built.home.mkdir(parents=True)
            base.chmod(0o755)
            try:
                build(built)
            except BaseException:
                shutil.rmtree(base, ignore_errors=True)
                raise
            (base / "built").touch()
        users.write_text(str(int(users.read_text() or 0) + 1 if users.exists() else 1))
    try:
        yield built
    finally:
        with exclusive(lock):
            left = int(users.read_text()) - 1
            users.write_text(str(left))
            if left == 0:
                stop_processes_of(built.user, base)
                shutil.rmtree(base, ignore_errors=True)
                users.unlink()
                lock.unlink()  # the last user: a worker that comes later starts afresh
