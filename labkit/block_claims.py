"""Claiming an address block so that no other lab on the machine takes it.

A claim is an exclusive `flock` on one lock file per block in a machine-wide folder. The
lab's supervisord inherits the locked descriptor, so the claim lasts exactly as long as the
supervisor: it ends when the lab stops, and also when the supervisor is killed (no stale
claims to clean up). The file says who holds it, to name them when a block is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from .blocks import MAX_BLOCK
from .errors import LabError
from .ports import is_free
from .topology import FALLBACK_BLOCKS, infra, loopback_aliases_work

LOCK_DIR_ENV = "LABKIT_LOCK_DIR"
LOCK_DIR = "/tmp/labkit-blocks"  # not $TMPDIR: on macOS that folder is per user


@dataclass
class Claim:
    """A held block: close `fd` once a longer-lived process (supervisord) inherited it."""

    block: int
    fd: int

    def release(self) -> None:
        os.close(self.fd)


def note_holder(block: int, state: Path, pid: int) -> None:
    """Record who holds `block` (read by `holder` to name them)."""
    info = json.dumps({"pid": pid, "user": getpass.getuser(), "state": str(state)})
    with contextlib.suppress(OSError):  # a read-only lock file: the claim holds all the same
        # no O_CREAT: see _open
        fd = os.open(lock_dir() / f"{block}.lock", os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, info.encode())
        finally:
            os.close(fd)


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV, LOCK_DIR))


def _open(block: int) -> int:
    folder = lock_dir()
    if not folder.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):  # shared by every user, like /tmp itself
            folder.chmod(0o1777)
    path = folder / f"{block}.lock"
    # Opened without O_CREAT when it exists: in a sticky folder, Linux refuses O_CREAT on
    # another user's file (fs.protected_regular). 0666: whoever claims it next writes into it.
    for flags in (os.O_RDWR, os.O_RDWR | os.O_CREAT | os.O_EXCL, os.O_RDWR, os.O_RDONLY):
        try:
            fd = os.open(path, flags, 0o666)
        except (FileNotFoundError, FileExistsError, PermissionError):
            continue
        if flags & os.O_CREAT:
            os.fchmod(fd, 0o666)
        return fd
    raise LabError(f"cannot open the block lock file {path}; check that {folder} is writable")


def _locked(block: int) -> int | None:
    """A descriptor holding `block`'s lock, or None when another lab holds it."""
    fd = _open(block)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def try_claim(block: int, state: Path) -> Claim | None:
    """The block, locked by this process; None when another lab holds it."""
    fd = _locked(block)
    if fd is None:
        return None
    note_holder(block, state, os.getpid())
    return Claim(block, fd)


def holder(block: int) -> str | None:
    """Who holds `block` (pid, user, state folder), or None when it is free."""
    fd = _locked(block)
    if fd is not None:
        os.close(fd)
        return None
    try:
        info = json.loads((lock_dir() / f"{block}.lock").read_text())
        alive = "" if psutil.pid_exists(info["pid"]) else ", no longer running"
        return f"pid {info['pid']}{alive} (user {info['user']}, state folder {info['state']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another lab (its lock file does not say which)"


def claim(block: int, state: Path) -> Claim:
    """Lock `block` for the lab in `state`, or refuse naming the lab that holds it."""
    held = try_claim(block, state)
    if held is None:
        raise LabError(f"block {block} (127.{block}.0.0/16) is taken by {holder(block)}; "
                       f"pick another with LABKIT_BLOCK=<0..{last_block()}>, or unset it to "
                       f"take the first free block")
    return held


def last_block() -> int:
    return MAX_BLOCK if loopback_aliases_work() else FALLBACK_BLOCKS - 1


def _candidates(excluding: Collection[int]) -> Iterator[int]:
    """Blocks not excluded whose infrastructure addresses are free (no orphan, no stranger)."""
    for block in range(last_block() + 1):
        if block not in excluding and _addresses_free(block):
            yield block


def _addresses_free(block: int) -> bool:
    return all(is_free(e) for e in infra(block).named().values())


def first_free(excluding: Collection[int] = ()) -> int:
    """The lowest block that no lab claims and whose infrastructure addresses are free."""
    for block in _candidates(excluding):
        if holder(block) is None:
            return block
    raise LabError(f"every block from 0 to {last_block()} is taken: stop a lab first")


def try_claim_unused(block: int, state: Path) -> Claim | None:
    """The block, locked by this process, when no lab holds it and nothing listens on its
    infrastructure addresses; else None. Locked first, checked second: a check made before
    the lock could go stale while another party (a lab, a test squatting an address under
    the block's lock) takes the block."""
    claimed = try_claim(block, state)
    if claimed is not None and not _addresses_free(block):
        claimed.release()
        return None
    return claimed


def claim_first_free(state: Path) -> Claim:
    """Claim the lowest free block: labs starting at the same moment each get their own."""
    for block in range(last_block() + 1):
        claimed = try_claim_unused(block, state)
        if claimed is not None:
            return claimed
    raise LabError(f"every block from 0 to {last_block()} is taken: stop a lab first")
