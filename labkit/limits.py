"""Resource limits of a service's instances, and the strongest mechanism the machine offers.

- "cgroup v1" (Linux, root, v1 memory and cpu hierarchies writable, as on the lab's CI
  machine): each instance in its own group below this process's; memory.limit_in_bytes (the
  kernel's OOM killer ends an instance that goes over) and cpu.cfs_quota_us (throttled to
  `cpu` cores).
- "rlimit" elsewhere (Binder, a laptop without cgroup delegation): memory only, as an
  address-space limit (RLIMIT_AS) of the instance's size when it was limited plus `memory`,
  so an allocation beyond it fails; CPU is not enforced there, and labkit says so.

Instances (re)started later join the same limits: their start command sources a small shell
file (`shell_lines`) that joins the groups or sets the ulimit before it execs the service.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import resource
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import psutil

from . import privileges
from .errors import LabError

if TYPE_CHECKING:
    from .backends.base import Backend
    from .topology import Service

MECHANISM_ENV = "LABKIT_LIMITS"  # "rlimit": the fallback even where cgroups are writable
MAX_CPU_BUDGET = 1000  # cores: a budget may promise more than the machine has (overcommit)
MIN_MEMORY_MB = 64  # an instance needs ~50 MB to start (RSS measured: echo 47, web 67)
CGROUP_ROOT = Path("/sys/fs/cgroup")
CPU_PERIOD_US = 100_000
CONTROLLERS = ("memory", "cpu")  # the v1 hierarchies a lab makes groups in
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*(k|m|g)(?:i?b)?", re.IGNORECASE)
_UNIT_MB = {"k": 1 / 1024, "m": 1, "g": 1024}


@dataclass(frozen=True)
class Limits:
    memory_mb: float | None = None  # None: unlimited
    cpu: float | None = None  # cores; None: unlimited

    def __bool__(self) -> bool:
        return self != Limits()

    def as_dict(self) -> dict[str, float | None]:
        return {"memory_mb": self.memory_mb, "cpu": self.cpu}


def parse(memory: object, cpu: object) -> Limits:
    """Limits from labkit's arguments ("96M", "1G", 256 = MiB; cores), or a LabError naming
    the valid range."""
    return Limits(memory_mb(memory, "memory"), cores(cpu, "cpu"))


def memory_mb(value: object, what: str) -> float | None:
    """A memory size in MiB ("96M", "1G", or a number of MiB), or None; LabError naming the
    valid range (`what` names the argument)."""
    total_mb = psutil.virtual_memory().total / 2**20
    valid = (f"a size such as '96M' or '1G', or a number of MiB, from {MIN_MEMORY_MB} MiB "
             f"(what an instance needs to start) to this machine's {total_mb:.0f} MiB; "
             "None for no limit")
    if value is None:
        return None
    if isinstance(value, bool):
        raise LabError(f"{what} must be {valid}, got {value!r}")
    if isinstance(value, int | float):
        mb = float(value)
    elif isinstance(value, str) and (match := _MEMORY.fullmatch(value.strip())):
        mb = float(match[1]) * _UNIT_MB[match[2].lower()]
    else:
        raise LabError(f"{what} must be {valid}, got {value!r}")
    if not MIN_MEMORY_MB <= mb <= total_mb:  # NaN fails too
        raise LabError(f"{what} must be {valid}, got {value!r}")
    return mb


def cores(value: object, what: str, maximum: float | None = None) -> float | None:
    """A number of CPU cores up to `maximum` (default: this machine's), or None."""
    top = maximum or os.cpu_count() or 1
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.01 <= value <= top:
        where = f"{top:g}" if maximum else f"this machine's {top:g}"
        raise LabError(f"{what} must be a number of cores from 0.01 to {where}, "
                       f"or None for no limit; got {value!r}")
    return float(value)


def mechanism() -> str:
    """"cgroup v1" where this process may make v1 memory and cpu groups, else "rlimit"."""
    if os.environ.get(MECHANISM_ENV) == "rlimit":
        return "rlimit"
    return "cgroup v1" if _cgroups_usable() else "rlimit"


@functools.cache
def _cgroups_usable() -> bool:
    """Whether a group can be made (and removed) below ours in every controller: writable
    files are not enough in some containers."""
    for controller in CONTROLLERS:
        own = _own_group(controller)
        if own is None:
            return False
        probe = own / f"labkit-probe-{os.getpid()}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError:
            return False
    return True


def _own_group(controller: str) -> Path | None:
    """This process's group in the v1 hierarchy of `controller`, if it is mounted."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") and (CGROUP_ROOT / controller).is_dir():
            return CGROUP_ROOT / controller / path.lstrip("/")
    return None


def lab_groups(block: int) -> list[Path]:
    """The parent groups of a lab's instances, one per v1 controller mounted."""
    return [own / f"labkit-block{block}" for c in CONTROLLERS
            if (own := _own_group(c)) is not None]


def _instance_groups(block: int, instance_id: str) -> dict[str, Path]:
    return {c: own / f"labkit-block{block}" / instance_id for c in CONTROLLERS
            if (own := _own_group(c)) is not None}


def check_fits(limits: Limits, rss_mb: dict[str, float]) -> None:
    """Refuse a memory limit below what a running instance already uses (nothing changes)."""
    over = {name: mb for name, mb in rss_mb.items()
            if limits.memory_mb is not None and mb >= limits.memory_mb}
    if over:
        using = ", ".join(f"{name} uses {mb:.0f} MiB" for name, mb in sorted(over.items()))
        raise LabError(f"memory {limits.memory_mb:g} MiB is below what running instances "
                       f"use ({using}): choose more, or heal them first")


def enforce(limits: Limits, block: int, instance_id: str, pid: int | None) -> str:
    """Apply `limits` to an instance (and to its running process `pid`, if any); return the
    shell lines that make a later start of it join them ("" when there is nothing to do)."""
    if pid is not None:
        _address_space(pid, None)  # a fallback limit set earlier goes, whatever comes next
    if mechanism() == "cgroup v1":
        groups = _instance_groups(block, instance_id)
        for group in groups.values():
            group.mkdir(parents=True, exist_ok=True)
            # the start command joins it as the programs' user (labkit.privileges)
            privileges.hand_over(group / "cgroup.procs", privileges.service_user())
        memory = -1 if limits.memory_mb is None else int(limits.memory_mb * 2**20)
        _write(groups["memory"] / "memory.limit_in_bytes", memory)
        _write(groups["cpu"] / "cpu.cfs_period_us", CPU_PERIOD_US)
        quota = -1 if limits.cpu is None else int(limits.cpu * CPU_PERIOD_US)
        _write(groups["cpu"] / "cpu.cfs_quota_us", quota)
        if pid is not None:
            for group in groups.values():
                _write(group / "cgroup.procs", pid)
        return "".join(f'echo $$ > "{group}/cgroup.procs"\n' for group in groups.values())
    if limits.memory_mb is None or pid is None:  # no pid: its size at start is not known
        return ""
    size = psutil.Process(pid).memory_info().vms + int(limits.memory_mb * 2**20)
    _address_space(pid, size)
    return f"ulimit -S -v {size // 1024}\n"


def _address_space(pid: int, size: int | None) -> None:
    """The soft limit only: without privileges a hard limit, once lowered, stays lowered."""
    if not hasattr(resource, "prlimit"):  # not Linux: nothing was set, nothing can be
        if size is None:
            return
        raise LabError("memory limits need Linux here (prlimit); this system has neither "
                       "writable cgroups nor prlimit")
    try:
        _soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
    except PermissionError:  # another user's process, and no CAP_SYS_RESOURCE (a container)
        _address_space_as_its_user(pid, size)
        return
    if size is not None and hard != resource.RLIM_INFINITY:
        size = min(size, hard)
    resource.prlimit(pid, resource.RLIMIT_AS,
                     (resource.RLIM_INFINITY if size is None else size, hard))


def _address_space_as_its_user(pid: int, size: int | None) -> None:
    """The soft limit set by util-linux's prlimit run as the process's own user (the
    programs' user, labkit.privileges), which may change its limits without privileges."""
    proc = psutil.Process(pid)
    soft = "unlimited" if size is None else str(size)
    owner = privileges.User(proc.username(), proc.uids().real, proc.gids().real)
    done = subprocess.run(["prlimit", f"--pid={pid}", f"--as={soft}:"],  # "N:": the soft only
                          **privileges.run_as(owner), capture_output=True, text=True,
                          timeout=10, check=False)
    if done.returncode != 0:
        raise LabError(f"could not set the address-space limit of pid {pid} to {soft}: "
                       f"{done.stderr.strip()}")


def _write(path: Path, value: int) -> None:
    try:
        path.write_text(str(value))
    except OSError as exc:
        raise LabError(f"could not set {path} to {value}: {exc.strerror}") from None


def remove_groups(lab_group_paths: Iterable[Path]) -> None:
    """Remove a stopped lab's groups (a group still holding a process stays)."""
    for lab_group in lab_group_paths:
        if lab_group.is_dir():
            for group in [*filter(Path.is_dir, lab_group.iterdir()), lab_group]:
                with contextlib.suppress(OSError):  # busy: a process is still in it
                    group.rmdir()


def describe(limits: Limits) -> str:
    memory = "no memory limit" if limits.memory_mb is None else f"memory {limits.memory_mb:g} MiB"
    cpu = "no CPU limit" if limits.cpu is None else f"{limits.cpu:g} CPU cores"
    return f"{memory}, {cpu}"


def table(backend: Backend, services: Iterable[Service]) -> pd.DataFrame:
    """One row per running instance: its limits, its memory in use and the mechanism."""
    how = mechanism()
    rows = []
    for svc in services:
        wanted = backend.limits(svc)
        for slot in backend.active_slots(svc):
            rows.append({
                "service": svc.name, "instance": svc.instance_id(slot),
                "memory_limit_mb": wanted.memory_mb,
                "memory_mb": rss_mb(backend.instance_pid(svc, slot)),
                "cpu_limit": wanted.cpu,
                "cpu_enforced": how != "rlimit" or wanted.cpu is None,
                "cpu_throttled_s": throttled_s(backend.block, svc.instance_id(slot)),
                "mechanism": how,
            })
    columns = ["service", "instance", "memory_limit_mb", "memory_mb", "cpu_limit",
               "cpu_enforced", "cpu_throttled_s", "mechanism"]
    return pd.DataFrame(rows, columns=columns)


def throttled_s(block: int, instance_id: str) -> float:
    """How long the kernel has held an instance back at its CPU quota, in seconds, since its
    group was made (cgroup v1 cpu.stat); NaN where cgroups are not in use."""
    if mechanism() != "cgroup v1":
        return float("nan")
    try:
        stat = (_instance_groups(block, instance_id)["cpu"] / "cpu.stat").read_text()
    except (KeyError, OSError):
        return float("nan")
    fields = dict(line.split() for line in stat.splitlines())
    return int(fields["throttled_time"]) / 1e9


def rss_mb(pid: int) -> float:
    """A process's resident memory in MiB (NaN if it has exited since)."""
    try:
        return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
    except psutil.Error:
        return float("nan")
