"""One operation at a time per service, across threads, notebooks and kernels: a file lock.

`scale`, `heal` and every deployment operation (deploy, shift, rollback, mirror, canary,
rollout) of a service hold `<state>/locks/<service>.lock` with an exclusive `flock` while they
run. A second operation on the same service, from this kernel or another, is refused at once
with what holds the lock (the holder writes it into the file); operations on other services
go ahead. The kernel dies, the lock goes with it: the operating system releases a `flock`
when its file is closed, so no lock outlives its holder.

`updating(path)` serializes short read-modify-writes of a file that several services share
(the declared replica counts): it waits for the file's lock, then the new content is written
to a temporary file and renamed over the old one, so a reader never sees half of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .errors import LabError

LOCKS_DIR = "locks"


def lock_path(state: Path, service: str) -> Path:
    return state / LOCKS_DIR / f"{service}.lock"


class ServiceLock:
    def __init__(self, state: Path, service: str, what: str):
        self.path = lock_path(state, service)
        self.service = service
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> ServiceLock:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            current = in_progress(self.path) or "an operation that has just started or ended"
            raise LabError(f"refused: {self.service} is busy with {current}, so {self.what} "
                           f"cannot run now; wait until it ends (one operation at a time per "
                           f"service: scale, heal and deployments)") from None
        holder = {"what": self.what, "pid": os.getpid(), "host": socket.gethostname(),
                  "started_at": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # the next reader sees no holder, not this one
        os.close(self._fd)  # releases the flock
        self._fd = None


def in_progress(path: Path) -> str | None:
    """What holds a service's lock, in words; None when nobody recorded holding it."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):  # no file, or the holder is writing it this instant
        return None
    age = time.time() - holder["started_at"]
    return (f"{holder['what']} (in progress, started {age:.0f} s ago by pid {holder['pid']} "
            f"on {holder['host']})")


@contextlib.contextmanager
def every_service(state: Path, services: Iterable[str], what: str) -> Iterator[None]:
    """Hold the locks of all `services` (for heal): refused if any one is held."""
    with contextlib.ExitStack() as held:
        for name in sorted(services):
            held.enter_context(ServiceLock(state, name, what))
        yield


def write_atomically(path: Path, text: str) -> None:
    """Write a temporary file beside `path`, then rename it over `path`."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


@contextlib.contextmanager
def updating(path: Path) -> Iterator[None]:
    """Wait for `path`'s own lock (short read-modify-writes only), hold it for the block."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
