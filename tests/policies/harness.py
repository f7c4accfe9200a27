"""A private gateway for the policy tests: etcd + Traefik + two controllable HTTP backends.

Addresses are kept away from the live stack and the other suites, in the test worker's own
block (tests/conftest.py): backends on 127.<block>.6.1 and .2, etcd on .6.20, Traefik on .6.21.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import etcd3gw
import httpx
import yaml
from services.support import free_port, wait_until, worker_host

from labkit.gateway import route_keys, server_key
from labkit.kv import etcd_client, put_atomically, transact
from labkit.processes import stop_child
from labkit.topology import Endpoint, service

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
SERVICE = "echo"
HOST = "echo.localhost"


class Backend:
    """A tiny HTTP server a test switches between ok, fail (500) and slow, or kills.

    /health always answers 200 while it runs, so Traefik's active health check (part of
    the route keys) keeps it in rotation and only the policy under test decides the outcome.
    """

    def __init__(self, host: str, name: str):
        self.name = name
        self.mode = "ok"
        self.delay = 0.5
        self.hits = 0  # requests other than health checks
        self.address = (host, 0)
        self.server: ThreadingHTTPServer | None = None
        self.connections: set[socket.socket] = set()  # open keep-alive connections
        self.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                backend.connections.add(self.connection)

            def finish(self) -> None:
                backend.connections.discard(self.connection)
                super().finish()

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                request = self.path != "/health"
                backend.hits += request
                if request and backend.mode == "slow":
                    time.sleep(backend.delay)
                body = backend.name.encode()
                self.send_response(500 if request and backend.mode == "fail" else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except BrokenPipeError:  # the gateway gave up on a slow reply (a timeout test)
                    self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def start(self) -> None:
        """Listen (again, on the same port after a kill)."""
        self.server = ThreadingHTTPServer(self.address, self._handler())
        self.server.daemon_threads = True
        self.address = self.server.server_address[:2]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kill(self) -> None:
        """Stop listening: the gateway's connections are refused, as for a crashed process."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        # a dead process's connections die with it: the gateway's pooled ones too
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    @property
    def url(self) -> str:
        return f"http://{self.address[0]}:{self.address[1]}"


def base_keys(backends: list[Backend]) -> dict[str, str]:
    """The echo route (labkit's own keys) with our backends as its servers."""
    keys = route_keys(service(SERVICE))
    for slot, backend in enumerate(backends, start=1):
        keys[server_key(service(SERVICE), slot)] = backend.url
    return keys


@dataclass
class Gateway:
    etcd_endpoint: Endpoint
    web_url: str
    api_url: str
    backends: list[Backend]
    log: Path
    processes: list[subprocess.Popen] = field(default_factory=list)

    def etcd(self) -> etcd3gw.Etcd3Client:
        return etcd_client(self.etcd_endpoint)

    def snapshot(self) -> dict[str, str]:
        """Every key under traefik/, to prove a rejected call wrote nothing."""
        return {
            meta["key"].decode(): value.decode()
            for value, meta in self.etcd().get_prefix("traefik/")
        }

    def reset(self) -> None:
        """Back to the bare route: delete everything, rewrite the base keys, wait for Traefik."""
        # one transaction: deleting everything first and writing the base keys after it let
        # Traefik serve an empty configuration (404s) after it had served the base route
        transact(self.etcd(), self.snapshot(), base_keys(self.backends))
        for backend in self.backends:
            backend.mode = "ok"
            if backend.server is None:
                backend.start()
        wait_until(self._bare_route_live, "the bare echo route in Traefik", timeout=10)
        # the API can show the route a moment before the entry point serves it (seen: 404s
        # right after Traefik started)
        wait_until(lambda: self.statuses(1) == [200], "the echo route served", timeout=10)

    def _bare_route_live(self) -> bool:
        router = httpx.get(f"{self.api_url}/api/http/routers/{SERVICE}@etcd", timeout=1).json()
        return (router.get("status") == "enabled" and not router.get("middlewares")
                and set(self.server_status().values()) == {"UP"})  # fmt: skip

    def server_status(self) -> dict[str, str]:
        body = httpx.get(f"{self.api_url}/api/http/services/{SERVICE}@etcd", timeout=1).json()
        return body.get("serverStatus", {})

    def get(self, client: httpx.Client, path: str = "/") -> httpx.Response:
        return client.get(f"{self.web_url}{path}", headers={"Host": HOST})

    def statuses(self, n: int, path: str = "/") -> list[int]:
        with httpx.Client(timeout=5) as client:
            return [self.get(client, path).status_code for _ in range(n)]


def start_etcd(base: Path) -> tuple[subprocess.Popen, Endpoint]:
    host = worker_host(6, 20)
    client_port, peer_port = free_port(host, 23510), free_port(host, 23560)
    client_url, peer_url = f"http://{host}:{client_port}", f"http://{host}:{peer_port}"
    log = (base / "etcd.log").open("w")
    process = subprocess.Popen(
        [str(BIN / "etcd"), "--name=policies", f"--data-dir={base / 'etcd'}",
         f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
         f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
         f"--initial-cluster=policies={peer_url}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return process, Endpoint(host, client_port)


def start_traefik(base: Path, etcd: Endpoint) -> tuple[subprocess.Popen, str, str, Path]:
    host = worker_host(6, 21)
    web_port, api_port = free_port(host, 18510), free_port(host, 18560)
    log = base / "traefik.log"
    static = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            "web": {"address": f"{host}:{web_port}"},
            "traefik": {"address": f"{host}:{api_port}"},
        },
        "api": {"insecure": True},
        "ping": {},
        "log": {"level": "INFO", "filePath": str(log)},
        "providers": {
            "providersThrottleDuration": "0s",
            "etcd": {"endpoints": [etcd.address], "rootKey": "traefik"},
        },
    }
    config = base / "traefik.yml"
    config.write_text(yaml.safe_dump(static))
    process = subprocess.Popen(
        [str(BIN / "traefik"), f"--configFile={config}"],
        stdout=subprocess.DEVNULL, stderr=(base / "traefik.out").open("w"),
    )  # fmt: skip
    return process, f"http://{host}:{web_port}", f"http://{host}:{api_port}", log


def start_gateway(base: Path) -> Gateway:
    """Start everything; on any failure, stop what was started before re-raising."""
    backends: list[Backend] = []
    processes: list[subprocess.Popen] = []
    try:
        backends = [Backend(worker_host(6, 1), "b1"), Backend(worker_host(6, 2), "b2")]
        etcd_process, endpoint = start_etcd(base)
        processes.append(etcd_process)
        wait_until(
            lambda: httpx.get(f"{endpoint.url}/health", timeout=1).json()["health"] == "true",
            "etcd /health", timeout=10,
        )  # fmt: skip
        # static keys before Traefik starts: an empty prefix makes its provider back off
        put_atomically(etcd_client(endpoint), base_keys(backends))
        traefik_process, web_url, api_url, log = start_traefik(base, endpoint)
        processes.append(traefik_process)
        gateway = Gateway(endpoint, web_url, api_url, backends, log, processes)
        wait_until(gateway._bare_route_live, "Traefik's echo route", timeout=15)
        return gateway
    except BaseException:
        stop_all(processes, backends)
        raise


def stop_all(processes: list[subprocess.Popen], backends: list[Backend]) -> None:
    for process in reversed(processes):
        stop_child(process, grace=5)
    for backend in backends:
        backend.kill()
