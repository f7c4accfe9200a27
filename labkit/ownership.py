"""A lab that lives and dies with a server: Binder's start script, a hub learner's server.

`labkit up --owner PID` starts the lab of its state folder (or finds it running) and, when no
live server owns that lab yet, leaves a watcher process behind: when PID exits, however it
exits (stopped, culled by the hub, crashed, SIGKILLed), the watcher runs `labkit down`, so no
lab outlives its server. The watcher holds an exclusive `flock` on `<state>/owner.lock` while
it lives; a second `up --owner` finds the lock held, waits until the owner's lab is up, uses it
and starts nothing: a start script run twice does not start a second lab.

The watcher runs in a session of its own, so a signal to the server's process group does not
stop it before it has stopped the lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

from .errors import LabError
from .lab import Lab
from .waits import wait_for

OWNER_LOCK = "owner.lock"  # in the state folder; says which pid's server owns the lab
WATCH_LOG = "owner.log"  # the watcher's output (not under logs/, which `up` empties)
POLL = 0.5  # how often the watcher looks at its server
OWNER_START_TIMEOUT = 120.0  # a second start waits this long for the owner's lab


def own(lab: Lab, owner: int) -> bool:
    """Bring `lab` up for the server `owner`; True when `owner` now owns it (a watcher stops
    it when `owner` exits), False when another live server already owned it."""
    if not psutil.pid_exists(owner):
        raise LabError(f"--owner {owner}: no such process (the server whose lab this is)")
    state = lab.backend.state
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(state / OWNER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _owner_of(state)
            lab.progress(f"the lab in {state} belongs to the server with pid {holder}; using it")
            wait_for(lab.backend.is_up, what=f"the lab of pid {holder} in {state}",
                     timeout=OWNER_START_TIMEOUT, hint=f"see {state / WATCH_LOG}")
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{owner}\n".encode())
        lab.up()
        with (state / WATCH_LOG).open("a") as log:
            subprocess.Popen(
                [sys.executable, "-m", "labkit.ownership", str(owner)],
                env={**os.environ, "LABKIT_STATE_DIR": str(state)},
                pass_fds=(fd,), start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        lab.progress(f"the lab stops when pid {owner} exits")
        return True
    finally:
        os.close(fd)  # the watcher holds the lock now (or, if `up` failed, nobody)


def _owner_of(state: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return str(int((state / OWNER_LOCK).read_text()))
    return "(unknown)"


def watch(owner: int) -> None:
    """The watcher: wait for the server `owner` to exit, then stop its lab.

    Not bounded on purpose: it lasts exactly as long as the server it watches.
    """
    try:
        server = psutil.Process(owner)
        while server.is_running() and server.status() != psutil.STATUS_ZOMBIE:
            time.sleep(POLL)
    except psutil.NoSuchProcess:
        pass
    print(f"{time.strftime('%H:%M:%S')} server pid {owner} exited: stopping the lab", flush=True)
    Lab().down()


if __name__ == "__main__":
    watch(int(sys.argv[1]))
