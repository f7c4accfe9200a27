"""Helpers for the service tests: a private etcd, service processes, bounded waits.

Everything binds 127.<block>.9.x (services) or 127.<block>.4.1 (etcd), in the test
worker's own block (tests/conftest.py), away from its live stack's addresses.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import etcd3gw
import httpx

from labkit import keyspace, topology
from labkit.waits import wait_for

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "stack"
ETCD_BIN = Path(sys.executable).parent / "etcd"
T = TypeVar("T")

_hosts = itertools.count(10)  # each service process gets its own 127.<block>.9.N


def worker_host(subnet: int, n: int) -> str:
    """127.<block>.<subnet>.<n>: an address in this test worker's private block (claimed for
    the session by tests/conftest.py), in a subnet no lab uses (4 to 9), so that parallel
    workers and other labs never collide."""
    assert 4 <= subnet <= 9, "subnets 0 to 3 belong to labs"
    return f"127.{os.environ['LABKIT_TEST_PRIVATE_BLOCK']}.{subnet}.{n}"


def next_host() -> str:
    return worker_host(9, next(_hosts))


def wait_until(probe: Callable[[], T], what: str, timeout: float, interval: float = 0.05) -> T:
    """labkit's wait, with the positional arguments these tests use."""
    return wait_for(probe, what=what, timeout=timeout, interval=interval)


def free_port(host: str, first: int) -> int:
    for port in range(first, first + 100):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port on {host} in {first}..{first + 99}")


@dataclass
class Etcd:
    host: str
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> etcd3gw.Etcd3Client:
        return etcd3gw.client(host=self.host, port=self.port, timeout=2)

    def snapshot(self) -> dict[str, tuple[bytes, str | None]]:
        """Every key with its value and lease, read in ONE range request (a consistent view)."""
        return {
            meta["key"].decode(): (value, meta.get("lease"))
            for value, meta in self.client().get_all()
        }


ETCD_HOST = 4  # private etcds live on 127.<block>.4.1


def start_etcd(data_dir: Path, client_port: int, peer_port: int) -> Etcd:
    host = worker_host(ETCD_HOST, 1)
    client_url, peer_url = f"http://{host}:{client_port}", f"http://{host}:{peer_port}"
    log = (data_dir.parent / f"etcd-{client_port}.log").open("w")
    process = subprocess.Popen(
        [
            str(ETCD_BIN),
            "--name=test",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=test={peer_url}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    etcd = Etcd(host, client_port, process)
    try:
        wait_until(
            lambda: httpx.get(f"{etcd.url}/health", timeout=1).json()["health"] == "true",
            "etcd /health",
            timeout=10,
        )
    except BaseException:
        stop_process(process)
        raise
    return etcd


@contextmanager
def private_etcd(base: Path, client_port: int, peer_port: int) -> Iterator[Etcd]:
    """A private etcd on the first free ports from the given ones, stopped afterwards."""
    server = start_etcd(
        base / "data", free_port(worker_host(ETCD_HOST, 1), client_port),
        free_port(worker_host(ETCD_HOST, 1), peer_port),
    )
    try:
        yield server
    finally:
        stop_process(server.process)


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=5)


@dataclass
class Service:
    """One running service process and what it was started with."""

    process: subprocess.Popen
    env: dict[str, str]
    log_path: Path

    @property
    def host(self) -> str:
        return self.env["LAB_HOST"]

    @property
    def url(self) -> str:
        return f"http://{self.env['LAB_HOST']}:{self.env['LAB_PORT']}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.env['LAB_HOST']}:{self.env['LAB_ADMIN_PORT']}/admin/faults"

    @property
    def admin_headers(self) -> dict[str, str]:
        """What labkit sends with an admin call: the lab's token (labkit.admin_token)."""
        token = Path(self.env["LAB_ADMIN_TOKEN_FILE"]).read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def admin_put(self, body: Any, url: str | None = None) -> httpx.Response:
        """PUT `body` on the admin API (its faults, unless `url` says), with the lab's token."""
        return httpx.put(url or self.admin_url, headers=self.admin_headers, json=body, timeout=2)

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def messages(self) -> list[str]:
        return [line["msg"] for line in self.logs()]

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)


def admin_token_file(folder: Path) -> Path:
    """A lab admin token in `folder`, as labkit makes it at `up` (owner-only); services refuse
    to start without one."""
    token = folder / "admin-token"
    token.write_text(secrets.token_urlsafe(32))
    token.chmod(0o600)
    return token


def lab_service(name: str) -> topology.Service:
    """labkit's description of service `name`; a test's own name (e.g. a private routeguide
    fleet) is described like routeguide: only the name matters to the key layout."""
    return topology.SERVICES.get(name) or replace(topology.SERVICES["routeguide"], name=name)


def instance_keys(service: Service) -> keyspace.InstanceKeys:
    """The keys `service` should register under, by labkit's key layout."""
    slot = int(service.env["LAB_SLOT"])
    return keyspace.instance_keys(lab_service(service.env["LAB_SERVICE"]), slot,
                                  service.env["LAB_VERSION"], service.process.pid)


def wait_registered(etcd: Etcd, service: Service, timeout: float = 5.0) -> dict[str, Any]:
    """Two keys of `service`, once both exist: its server key behind the whole fleet and its
    registry record, as {"traefik": (key, value, lease), "registry": (key, value, lease)}."""
    name, slot = service.env["LAB_SERVICE"], service.env["LAB_SLOT"]
    keys = instance_keys(service)
    traefik_key, registry_key = keys.servers[0], keys.registry

    def both() -> dict[str, Any] | None:
        assert service.process.poll() is None, f"{name} exited with {service.process.returncode}"
        keys = etcd.snapshot()
        if traefik_key in keys and registry_key in keys:
            return {"traefik": (traefik_key, *keys[traefik_key]),
                    "registry": (registry_key, *keys[registry_key])}  # fmt: skip
        return None

    return wait_until(both, f"{name}-{slot} to register", timeout)
