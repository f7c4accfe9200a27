"""New connections to the gateway go to the Traefik that serves, not to one starting or
stopping.

Traefik's entry points reuse their port (SO_REUSEPORT) so that a second Traefik can listen
beside the first: the stand-in while the gateway restarts, the supervised successor of an
orphaned one. The kernel spreads new connections over every listener of the port, but a
Traefik that has just bound answers 404 until it has loaded its routes from etcd, 60-500 ms
(measured: 785 of 18,700 fresh connections got a 404 over four restarts), and one that stops
resets the connections still queued on its listener. A classic BPF program attached to the
port's listeners picks one of them, by its place among them, for every new connection: the
first (the one that serves) while the second starts, then the second (once it serves) before
the first stops. Places follow the order the listeners came in; when the first closes, the
kernel moves the last into its place.
The program attaches through one of the listeners, borrowed from the Traefik that holds it
(pidfd_getfd): a socket of our own would join the listeners last, and the program left from
the previous switch can send it, until the new one is on, the new connections (reset when it
closes; a thread switch can make that moment milliseconds long: one of 5,159 connections was
reset in a full run). Where borrowing is not allowed (Yama's ptrace scope), our own socket
it is.
Linux only; elsewhere the spread remains and a restart can answer a few 404s.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import sys

from .topology import Endpoint

SO_ATTACH_REUSEPORT_CBPF = 51  # linux/asm-generic/socket.h; not exported by Python's socket
BPF_RET_K = 0x06  # BPF_RET | BPF_K: return a constant
FIRST, SECOND = 0, 1  # places among the listeners, in the order they came
SYS_PIDFD_GETFD = 438  # the same number on every Linux architecture (since 5.6)
TCP_LISTEN = "0A"  # a socket's state in /proc/net/tcp
_libc = ctypes.CDLL(None, use_errno=True)


def send_new_connections_to(endpoint: Endpoint, place: int, owner: int | None = None) -> bool:
    """Every new connection to `endpoint` goes to the listener at `place` (FIRST or SECOND;
    with fewer listeners, the kernel's spread). `owner`: the uid the listeners belong to, when
    not this process's (the kernel joins only sockets of one user; root may choose). False
    where the platform cannot do this."""
    if not sys.platform.startswith("linux"):
        return False
    program = ctypes.create_string_buffer(struct.pack("HBBI", BPF_RET_K, 0, 0, place))
    fprog = struct.pack("HP", 1, ctypes.addressof(program))  # struct sock_fprog
    borrowed = _borrow_listener(endpoint)
    if borrowed is not None:
        with socket.socket(fileno=borrowed) as listener:  # closes our copy only
            listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
        return True
    # Our own socket, last among the listeners: it leaves the program behind when it closes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as anchor:
        if owner is not None:
            os.fchown(anchor.fileno(), owner, -1)
        anchor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        anchor.bind((endpoint.host, endpoint.port))
        anchor.listen(1)
        anchor.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    return True


def _borrow_listener(endpoint: Endpoint) -> int | None:
    """A file descriptor of ours for a socket listening on `endpoint` in another process,
    or None when there is none we may borrow."""
    inodes = _listening_inodes(endpoint)
    links = {f"socket:[{inode}]" for inode in inodes}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = [fd for fd in os.listdir(f"/proc/{pid}/fd")
                   if os.readlink(f"/proc/{pid}/fd/{fd}") in links]
            if fds:
                pidfd = os.pidfd_open(int(pid))
                try:
                    return _pidfd_getfd(pidfd, int(fds[0]))
                finally:
                    os.close(pidfd)
        except OSError:  # gone, not ours to read, or borrowing refused: the next one
            continue
    return None


def _listening_inodes(endpoint: Endpoint) -> set[int]:
    """The inodes of the TCP sockets listening on `endpoint` (IPv4), from /proc/net/tcp."""
    host = struct.unpack("=I", socket.inet_aton(endpoint.host))[0]  # as the kernel prints it
    address = f"{host:08X}:{endpoint.port:04X}"
    inodes = set()
    with open("/proc/net/tcp") as table:
        next(table)  # the header
        for row in table:
            fields = row.split()
            if fields[1] == address and fields[3] == TCP_LISTEN:
                inodes.add(int(fields[9]))
    return inodes


def _pidfd_getfd(pidfd: int, target_fd: int) -> int:
    fd = _libc.syscall(SYS_PIDFD_GETFD, pidfd, target_fd, 0)
    if fd < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
    return fd
