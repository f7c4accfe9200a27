"""Checking that the stack's ports are free, and naming who holds a busy one."""

from __future__ import annotations

import socket
from collections.abc import Iterable

import psutil

from .errors import LabError
from .topology import Endpoint


def is_free(endpoint: Endpoint) -> bool:
    with socket.socket() as probe:
        # SO_REUSEADDR ignores TIME_WAIT leftovers but still fails on a listener.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((endpoint.host, endpoint.port))
        except OSError:
            return False
    return True


def holder(endpoint: Endpoint) -> str:
    """A description of the process listening on `endpoint`, if the OS lets us see it
    (another lab may listen on the same port at another address: that one does not count)."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, PermissionError):
        return "unknown process (not allowed to list sockets)"
    for conn in conns:
        if (conn.status == psutil.CONN_LISTEN and conn.laddr
                and conn.laddr.port == endpoint.port
                and conn.laddr.ip in (endpoint.host, "0.0.0.0", "::")):
            if conn.pid is None:
                return "unknown process"
            try:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline())[:120]})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return "unknown process"


def ensure_free(endpoints: Iterable[tuple[str, Endpoint]]) -> None:
    """Raise naming every busy (component, address) pair, and who holds it."""
    busy = [
        f"  {what} needs {ep.address}, held by {holder(ep)}"
        for what, ep in endpoints
        if not is_free(ep)
    ]
    if busy:
        raise LabError(
            "ports already in use, nothing was started:\n" + "\n".join(busy)
            + "\nHint: is another lab running? 'labkit down' stops it; otherwise stop that process."
        )
