"""A small client for supervisord's XML-RPC API over its unix socket."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path
from typing import Any, cast

from supervisor.xmlrpc import SupervisorTransport

from ..errors import LabError

# supervisord's process states that mean "a process exists or is about to"
ACTIVE_STATES = {"STARTING", "RUNNING", "BACKOFF", "STOPPING"}
# FATAL: supervisord gave up after `startretries` quick exits (BACKOFF and EXITED are
# transient: it is trying again, e.g. right after a crash)
FAILED_STATES = {"FATAL"}


class Supervisor:
    def __init__(self, socket_path: Path):
        self.socket_path = socket_path

    @property
    def _rpc(self) -> xmlrpc.client.ServerProxy:
        # A fresh connection per call: a kept-alive one is left unusable when supervisord
        # restarts (http.client's CannotSendRequest), and a unix socket costs little to open.
        transport = SupervisorTransport(None, None, f"unix://{self.socket_path}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def is_running(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            state = cast(dict[str, Any], self._rpc.supervisor.getState())
            return state["statename"] == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    def pid(self) -> int:
        return cast(int, self._rpc.supervisor.getPID())

    def processes(self) -> list[dict]:
        """One dict per program: name, group, statename, pid, start, description."""
        return cast(list[dict], self._rpc.supervisor.getAllProcessInfo())

    def info(self, name: str) -> dict:
        return cast(dict, self._rpc.supervisor.getProcessInfo(name))

    def start(self, name: str) -> None:
        self._call("startProcess", name, False)

    def stop(self, name: str, wait: bool = False) -> None:
        self._call("stopProcess", name, wait)

    def stop_group(self, group: str) -> None:
        """Signal every process of a group to stop, without waiting for any of them."""
        self._call("stopProcessGroup", group, False)

    def stop_all(self) -> None:
        self._call("stopAllProcesses", False)

    def kill_and_hold(self, name: str) -> None:
        """SIGKILL a process and mark it stopped in one request (one turn of supervisord's
        loop), so that it cannot be reaped and restarted in between."""
        # one reply per call: its result, or a fault as a dict with faultCode/faultString
        results = cast(list[Any], self._rpc.system.multicall([
            {"methodName": "supervisor.signalProcess", "params": [name, "KILL"]},
            {"methodName": "supervisor.stopProcess", "params": [name, False]},
        ]))
        failed = [r["faultString"] for r in results if isinstance(r, dict) and "faultCode" in r]
        if failed:
            raise LabError(f"supervisord refused to kill {name}: {'; '.join(failed)}")

    def signal(self, name: str, signal_name: str) -> None:
        self._call("signalProcess", name, signal_name)

    def shutdown(self) -> None:
        self._rpc.supervisor.shutdown()

    def _call(self, method: str, *args: object) -> None:
        try:
            getattr(self._rpc.supervisor, method)(*args)
        except xmlrpc.client.Fault as fault:
            # ALREADY_STARTED / NOT_RUNNING make start and stop idempotent
            if "ALREADY_STARTED" in fault.faultString or "NOT_RUNNING" in fault.faultString:
                return
            raise LabError(f"supervisord refused {method}{args}: {fault.faultString}") from None
