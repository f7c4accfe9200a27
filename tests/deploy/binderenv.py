"""A Binder-like environment: the helpers behind conftest.binder_env.

As repo2docker builds an image, but without Docker: a user who is not root, a home folder with
a copy of the repository, a fresh venv made only from `binder/` (requirements.txt, then
postBuild). Prometheus comes from the machine, as `binder/apt.txt` gets it on Binder.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent.parent
LEARNER = "mplab-learner"  # made when the suite runs as root: Binder's user is never root
BUILD_TIMEOUT = 900  # pip install of requirements.txt on a busy 2-core machine


def learner_user() -> str:
    """A user that is not root: this one when it is not root, else LEARNER (made if needed)."""
    if os.getuid() != 0:
        return pwd.getpwuid(os.getuid()).pw_name
    try:
        pwd.getpwnam(LEARNER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/bash", LEARNER],
                       check=True, capture_output=True, timeout=30)
    return LEARNER


def learner_python(user: str) -> str:
    """A Python >= 3.10 the learner may run (root's own interpreter may sit in root's home)."""
    for candidate in (os.path.realpath(sys._base_executable), "/usr/bin/python3"):
        try:
            check = "import sys, venv; assert sys.version_info >= (3, 10)"
            subprocess.run([candidate, "-c", check], user=user, cwd="/", check=True,
                           capture_output=True, timeout=30)
            return candidate
        except (OSError, subprocess.SubprocessError):
            continue
    raise RuntimeError(f"no Python >= 3.10 with venv that {user} may run")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class BinderEnv:
    user: str
    home: Path  # the learner's home; the repository is copied into it, as repo2docker does
    venv: Path

    @property
    def repo(self) -> Path:
        return self.home / "repo"

    def env(self, home: Path | None = None, **extra: str) -> dict[str, str]:
        """The environment of a process of this user: no trace of the suite's own lab."""
        keep = {k: v for k, v in os.environ.items()
                if not k.startswith(("LABKIT_", "JUPYTER", "JPY_", "PYTEST", "VIRTUAL_ENV"))}
        home = home or self.home
        return {**keep, "HOME": str(home), "USER": self.user, "LOGNAME": self.user,
                "PATH": f"{self.venv / 'bin'}:{keep['PATH']}", **extra}

    def run(self, command: list[str], timeout: float, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> str:
        done = subprocess.run(command, cwd=cwd or self.repo, env=env or self.env(),
                              user=self.user, capture_output=True, text=True,
                              timeout=timeout, check=False)
        assert done.returncode == 0, (f"{' '.join(command)} failed ({done.returncode}):\n"
                                      f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def popen(self, command: list[str], log: Path, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        with log.open("w") as out:
            return subprocess.Popen(command, cwd=cwd or self.repo, env=env or self.env(),
                                    user=self.user, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)


def tracked_files() -> list[str]:
    """What a clone of this work tree holds (with uncommitted changes, without ignored files)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True, timeout=30).stdout
    return [name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


def stop_processes_of(user: str, root: Path) -> None:
    """Kill whatever a test left running from `root` (servers, labs): nothing left behind."""
    for proc in psutil.process_iter(["username", "cmdline", "environ"]):
        try:
            if proc.info["username"] != user:
                continue
            seen = [*(proc.info["cmdline"] or []), *(proc.info["environ"] or {}).values()]
            if any(str(root) in part for part in seen):
                proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue
