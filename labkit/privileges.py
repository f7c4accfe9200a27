"""Who the lab's processes run as, and what of the state folder they may touch.

Run by root, labkit still runs supervisord (it starts each program as another user, and its
control socket stays root's alone) but every program supervisord starts (Traefik, etcd,
Prometheus, promsd, the telemetry store, the services) runs as an unprivileged user: `labkit`,
a system user scripts/setup.sh makes when run as root, else `nobody`. Run by anyone else,
nothing changes: the programs run as labkit's own user.

The state folder stays root's (mode 0710, group: the user's, so that the user may reach the
files it needs by name and list nothing); the folders the programs write (their logs, etcd's
and Prometheus's data, the telemetry store, the auth service's keys) and the admin token are
handed over to the user, mode 0700 / 0600. labkit never writes into a folder the user owns,
so a planted symlink cannot make it write elsewhere.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import paths
from .errors import LabError

SERVICE_USER = "labkit"  # made by scripts/setup.sh when it runs as root
FALLBACK_USER = "nobody"


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def service_user() -> User | None:
    """The user the lab's programs run as when labkit is root; None otherwise (they run as
    labkit's own user)."""
    if os.geteuid() != 0:
        return None
    for name in (SERVICE_USER, FALLBACK_USER):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return User(name, entry.pw_uid, entry.pw_gid)
    raise LabError(f"labkit runs as root, so the lab's programs run as an unprivileged user, "
                   f"but neither {SERVICE_USER!r} nor {FALLBACK_USER!r} exists: run "
                   f"'make setup' as root, which makes {SERVICE_USER!r}")


def hand_over(path: Path, user: User | None) -> None:
    """Give `path` (and, for a folder, everything in it) to `user`; nothing when None.
    Symbolic links are changed themselves, never followed."""
    if user is None:
        return
    os.chown(path, user.uid, user.gid, follow_symlinks=False)
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(Path(folder) / name, user.uid, user.gid, follow_symlinks=False)


def private_folder(path: Path, user: User | None) -> None:
    """A folder only `user` (or, when None, labkit's own user) may enter: 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)  # mkdir's mode is masked by the umask, and an existing one kept
    hand_over(path, user)


def lock_state(state: Path, user: User | None) -> None:
    """The state folder: labkit's own (0700), or root's with the programs' user let through
    by name only (0710, its group)."""
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    if user is None:
        state.chmod(0o700)
        return
    os.chown(state, 0, user.gid)
    state.chmod(0o710)


def programs_need() -> list[Path]:
    """The folders every program must pass through: the repository (their working folder and
    code), the venv and the real interpreter's installation (a venv links to it)."""
    interpreter = Path(os.path.realpath(sys.executable)).parent
    return [paths.REPO, paths.BIN, interpreter, Path(sys.base_prefix)]


def run_as(user: User | None) -> dict[str, Any]:
    """subprocess keyword arguments that start a child as `user`, without root's supplementary
    groups; none for None (the child runs as this process's user)."""
    if user is None:
        return {}
    return {"user": user.uid, "group": user.gid, "extra_groups": []}


def blocked(user: User, folders: list[Path]) -> Path | None:
    """The first folder on the way to any of `folders` (or one of them) that `user` may not
    enter; asked as `user` (a `cd` the kernel allows or not: ACLs count)."""
    steps: list[str] = []
    for folder in folders:
        steps += [str(step) for step in [*reversed(folder.parents), folder]
                  if str(step) not in steps]
    # one that does not exist is skipped: labkit makes it (and everything below it)
    script = 'for p; do [ -d "$p" ] || continue; cd "$p" 2>/dev/null || { echo "$p"; exit; }; done'
    found = subprocess.run(["/bin/sh", "-c", script, "sh", *steps], **run_as(user),
                           capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    return Path(found) if found else None


def check_reachable(user: User | None, folders: list[Path]) -> None:
    """A LabError naming the first folder on the way to any of `folders` or to what every
    program needs (`programs_need`) that `user` may not enter; nothing when None."""
    if user is None:
        return
    step = blocked(user, [*folders, *programs_need()])
    if step is not None:
        raise LabError(
            f"the lab's programs run as user {user.name!r} (labkit runs as root), who may not "
            f"enter {step} ({stat.filemode(step.stat().st_mode)}, uid {step.stat().st_uid}). "
            f"Run 'make setup' as root (it lets {SERVICE_USER!r} through the folders the "
            f"programs need), or keep LABKIT_STATE_DIR where every user may pass (the "
            f"repository's .lab is)")

