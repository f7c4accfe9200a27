"""What a running lab exposes, as tables to check: who runs its processes, where they listen,
and the permissions of the files that hold its secrets (notebook 14, tests/integration)."""

from __future__ import annotations

import ipaddress
import pwd
import socket
import stat
from pathlib import Path

import pandas as pd
import psutil

from . import admin_token, auth
from .backends.local import LocalBackend


def processes(backend: LocalBackend) -> pd.DataFrame:
    """One row per process of the lab (supervisord, each program and its children): program,
    pid, user."""
    rows = []
    programs = [(p["name"], p["pid"]) for p in backend.processes() if p["pid"]]
    for program, pid in [("supervisord", backend.supervisor.pid()), *programs]:
        try:
            parent = psutil.Process(pid)
            # supervisord's children are the programs, listed under their own names
            family = [parent] if program == "supervisord" else [
                parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for proc in family:
            try:
                rows.append({"program": program, "pid": proc.pid, "user": proc.username()})
            except psutil.NoSuchProcess:
                continue
    return pd.DataFrame(rows, columns=["program", "pid", "user"])


def listening(backend: LocalBackend) -> pd.DataFrame:
    """Every socket the lab's processes listen on (TCP) or are bound to (UDP): program, pid,
    protocol, address, port, loopback."""
    owners = {row.pid: row.program for row in processes(backend).itertuples()}
    rows = []
    for conn in psutil.net_connections(kind="inet"):
        listens = conn.status == psutil.CONN_LISTEN or (
            conn.type == socket.SOCK_DGRAM and not conn.raddr)
        if conn.pid in owners and listens and conn.laddr:
            address, port = conn.laddr  # (ip, port) for an inet socket
            rows.append({"program": owners[conn.pid], "pid": conn.pid,
                         "protocol": "tcp" if conn.type == socket.SOCK_STREAM else "udp",
                         "address": address, "port": port,
                         "loopback": _is_loopback(address)})
    columns = ["program", "pid", "protocol", "address", "port", "loopback"]
    return pd.DataFrame(rows, columns=columns).sort_values(["program", "port"], ignore_index=True)


def _is_loopback(address: str) -> bool:
    """127.0.0.0/8 or ::1, also as an IPv4-mapped IPv6 address (gRPC's sockets show so)."""
    ip = ipaddress.ip_address(address)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


def secrets(state: Path) -> pd.DataFrame:
    """The state folder and what in it holds a secret or a control surface (the admin token,
    supervisord's control socket, the auth service's keys): path, kind, mode, owner."""
    folder = auth.state_folder(state)
    found = [state, admin_token.path(state), state / "supervisor.sock", folder,
             *sorted(folder.rglob("*"))]
    rows = []
    for path in found:
        info = path.lstat()
        kind = ("folder" if stat.S_ISDIR(info.st_mode) else
                "socket" if stat.S_ISSOCK(info.st_mode) else "file")
        rows.append({"path": str(path.relative_to(state.parent)), "kind": kind,
                     "mode": f"{stat.S_IMODE(info.st_mode):04o}", "owner": _user(info.st_uid)})
    return pd.DataFrame(rows, columns=["path", "kind", "mode", "owner"])


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
