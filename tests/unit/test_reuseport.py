"""labkit.reuseport: which of a port's listeners new connections go to, set through a
listener borrowed from the process that holds it."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from labkit import reuseport
from labkit.topology import Endpoint

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")

HOST = "127.0.0.77"
# a listener in its own process, as Traefik's: it answers each connection with its name
LISTENER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[3].encode())
    c.close()
"""


@pytest.fixture
def two_listeners() -> Iterator[Endpoint]:
    """'first' then 'second' listening on one port."""
    children: list[subprocess.Popen] = []
    port = 0
    try:
        for name in ("first", "second"):
            child = subprocess.Popen([sys.executable, "-c", LISTENER, HOST, str(port), name],
                                     stdout=subprocess.PIPE, text=True)
            children.append(child)
            assert child.stdout is not None
            port = int(child.stdout.readline())
        yield Endpoint(HOST, port)
    finally:
        for child in children:
            child.kill()
            child.wait(timeout=10)


def answers(endpoint: Endpoint, count: int = 20) -> set[str]:
    names = set()
    for _ in range(count):
        with socket.create_connection((endpoint.host, endpoint.port), timeout=5) as conn:
            names.add(conn.recv(16).decode())
    return names


def test_new_connections_go_to_the_listener_at_the_place_chosen(two_listeners: Endpoint):
    assert reuseport.send_new_connections_to(two_listeners, reuseport.SECOND)
    assert answers(two_listeners) == {"second"}
    assert reuseport.send_new_connections_to(two_listeners, reuseport.FIRST)
    assert answers(two_listeners) == {"first"}


def test_the_program_attaches_through_a_borrowed_listener_not_one_of_ours(
        two_listeners: Endpoint, monkeypatch: pytest.MonkeyPatch):
    # a listener of ours would join the port for a moment, and could take connections then
    def no_listener_of_ours(*args: object) -> None:
        raise AssertionError("labkit listened on the gateway's port")

    monkeypatch.setattr(socket.socket, "listen", no_listener_of_ours)
    assert reuseport.send_new_connections_to(two_listeners, reuseport.SECOND)
    assert answers(two_listeners) == {"second"}
    assert len(reuseport._listening_inodes(two_listeners)) == 2
