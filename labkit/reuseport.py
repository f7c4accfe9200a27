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


def send_new_connections_to(endpoint: Endpoint, place: int, owner: int | None = None) -> bool:
    """Every new connection to `endpoint` goes to the listener at `place` (FIRST or SECOND;
    with fewer listeners, the kernel's spread). `owner`: the uid the listeners belong to, when
    not this process's (the kernel joins only sockets of one user; root may choose). False
    where the platform cannot do this."""
    if not sys.platform.startswith("linux"):
        return False
    program = ctypes.create_string_buffer(struct.pack("HBBI", BPF_RET_K, 0, 0, place))
    fprog = struct.pack("HP", 1, ctypes.addressof(program))  # struct sock_fprog
    # A program attaches to the listeners through one of their sockets: this one comes last,
    # so it receives nothing once the program is on (a connection spread to it in the
    # microseconds before would be reset when it closes), and leaves the program behind.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as anchor:
        if owner is not None:
            os.fchown(anchor.fileno(), owner, -1)
        anchor.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        anchor.bind((endpoint.host, endpoint.port))
        anchor.listen(1)
        anchor.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    return True
