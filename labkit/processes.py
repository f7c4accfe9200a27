"""Stopping a process the graceful way: SIGTERM, then SIGKILL for whatever is left."""

from __future__ import annotations

import contextlib
import signal
import subprocess

import psutil


def stop(pid: int, grace: float) -> None:
    """SIGTERM (a lab component deregisters, drains or flushes), SIGKILL to it and its
    children if it is still there after `grace` seconds; returns once it is gone."""
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(pid).terminate()
    if not wait_gone(pid, timeout=grace):
        kill_tree(pid)
        wait_gone(pid, timeout=grace)


def stop_child(process: subprocess.Popen, grace: float) -> None:
    """`stop` for a process this one started, which is then reaped."""
    if process.poll() is None:  # once reaped, its pid may be another process's
        stop(process.pid, grace)
    process.wait(timeout=grace)


def wait_gone(pid: int, timeout: float) -> bool:
    """Whether `pid` exited (and, if it is our child, was reaped) within `timeout` seconds."""
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        return False
    return True


def kill_tree(pid: int) -> None:
    try:
        parent = psutil.Process(pid)
        for child in parent.children(recursive=True):
            child.send_signal(signal.SIGKILL)
        parent.send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
        pass
