"""labkit.grpc_client against a private etcd and real routeguide processes.

Everything binds 127.<block>.7.x (instances) or 127.<block>.4.1 (etcd), away from the
live stack and from tests/services. No __init__.py here on purpose: with pytest's
default import mode it would make this folder a package called `grpc` that
shadows grpcio.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from labstack import routeguide_pb2 as pb
from labstack import routeguide_pb2_grpc as pb_grpc
from services.support import (
    STACK,
    Etcd,
    Service,
    admin_token_file,
    free_port,
    lab_service,
    private_etcd,
    start_etcd,
    stop_process,
    wait_registered,
    wait_until,
    worker_host,
)

from labkit.backends.local_config import registration_environment
from labkit.demos.routeguide import KINDS, call_log, health, reflected_services
from labkit.errors import LabError, LabTimeout
from labkit.grpc_client import DiscoveredChannel, gateway_channel, registry_channel

pytestmark = pytest.mark.timeout(90)

PORT, METRICS_PORT, ADMIN_PORT = 16051, 16100, 26051
LEASE_TTL = 3  # as in the live stack
TRIO = ("routeguide-1", "routeguide-2", "routeguide-3")
_hosts = itertools.count(10)  # each instance gets its own 127.<block>.7.N


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    with private_etcd(tmp_path_factory.mktemp("grpc-etcd"), 23610, 23660) as server:
        yield server


class Fleet:
    """routeguide processes registered as `service`; all are killed by stop()."""

    def __init__(self, etcd: Etcd, service: str, log_dir: Path) -> None:
        self.etcd, self.service, self.log_dir = etcd, service, log_dir
        self.started: list[Service] = []

    def start(self, slot: int) -> Service:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(STACK), os.environ.get("PYTHONPATH")])),
            "LAB_SERVICE": self.service,
            "LAB_SLOT": str(slot),
            "LAB_VERSION": "v1",
            "LAB_HOST": worker_host(7, next(_hosts)),
            "LAB_PORT": str(PORT),
            "LAB_METRICS_PORT": str(METRICS_PORT),
            "LAB_ADMIN_PORT": str(ADMIN_PORT),
            "LAB_ETCD": self.etcd.url,
            "LAB_LEASE_TTL": str(LEASE_TTL),
            "LAB_ADMIN_TOKEN_FILE": str(admin_token_file(self.log_dir)),
            **registration_environment(lab_service(self.service), slot),
        }
        log_path = self.log_dir / f"{self.service}-{slot}-{len(self.started)}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "labstack.routeguide"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        service = Service(process, env, log_path)
        self.started.append(service)
        return service

    def start_registered(self, *slots: int) -> list[Service]:
        services = [self.start(slot) for slot in slots]  # start together: imports take a while
        for service in services:
            wait_registered(self.etcd, service, timeout=20)
        return services

    def stop(self) -> None:
        for service in self.started:
            stop_process(service.process)


def address(service: Service) -> str:
    return f"{service.host}:{PORT}"


@pytest.fixture(scope="module")
def trio(etcd: Etcd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Service]]:
    fleet = Fleet(etcd, "routeguide", tmp_path_factory.mktemp("trio"))
    try:
        yield fleet.start_registered(1, 2, 3)
    finally:
        fleet.stop()


@pytest.fixture
def fleet(etcd: Etcd, tmp_path: Path) -> Iterator[Callable[[str], Fleet]]:
    fleets: list[Fleet] = []

    def make(service: str) -> Fleet:
        fleets.append(Fleet(etcd, service, tmp_path))
        return fleets[-1]

    try:
        yield make
    finally:
        for each in fleets:
            each.stop()


def warmed_up(channel: grpc.Channel, instances: tuple[str, ...]) -> None:
    """Wait until calls reach every instance: round_robin only picks connected subchannels."""
    wait_until(
        lambda: set(call_log(channel, 2 * len(instances))["instance"]) == set(instances),
        f"calls to reach {instances}",
        timeout=5,
    )


def test_round_robin_spreads_calls_evenly_and_pick_first_does_not(
    etcd: Etcd, trio: list[Service]
) -> None:
    with registry_channel("routeguide", etcd_endpoint=f"{etcd.host}:{etcd.port}") as channel:
        assert sorted(channel.addresses) == sorted(address(s) for s in trio)
        warmed_up(channel, TRIO)
        df = call_log(channel, 60)
    shares = df["instance"].value_counts().to_dict()
    print(f"round_robin, 60 calls: {shares}")
    assert (df["code"] == "OK").all()
    assert set(shares) == set(TRIO)
    assert all(abs(n - 20) <= 2 for n in shares.values()), shares

    with registry_channel(
        "routeguide", balancing="pick_first", etcd_endpoint=f"{etcd.host}:{etcd.port}"
    ) as channel:
        df = call_log(channel, 60)
    print(f"pick_first, 60 calls: {df['instance'].value_counts().to_dict()}")
    assert (df["code"] == "OK").all()
    assert df["instance"].nunique() == 1


def test_every_rpc_kind_health_and_reflection(etcd: Etcd, trio: list[Service]) -> None:
    with registry_channel("routeguide", etcd_endpoint=f"{etcd.host}:{etcd.port}") as channel:
        warmed_up(channel, TRIO)
        for kind in KINDS:
            df = call_log(channel, 6, kind)
            assert list(df.columns) == ["start", "latency_ms", "code", "instance", "kind"]
            assert (df["code"] == "OK").all(), df
            assert (df["kind"] == kind).all()
            assert set(df["instance"]) == set(TRIO), (kind, df)
            assert df["start"].is_monotonic_increasing and df["start"].iloc[0] == 0

        assert health(channel) == "SERVING"
        assert health(channel, "routeguide.RouteGuide") == "SERVING"
        services = reflected_services(channel)
    assert health(address(trio[0])) == "SERVING"
    assert health(address(trio[0]), "no.such.Service") == "SERVICE_UNKNOWN"
    assert "routeguide.RouteGuide" in services
    assert "grpc.health.v1.Health" in services


def test_failed_calls_are_rows() -> None:
    nobody = f"{worker_host(7, 254)}:{free_port(worker_host(7, 254), 16000)}"
    with grpc.insecure_channel(nobody) as channel:
        df = call_log(channel, 2, "bidi", timeout=0.5)
        with pytest.raises(LabError, match="health check failed: UNAVAILABLE"):
            health(channel, timeout=0.5)
    assert list(df["code"]) == ["UNAVAILABLE"] * 2
    assert list(df["instance"]) == ["", ""]


def test_bad_arguments_give_clear_errors(etcd: Etcd, trio: list[Service]) -> None:
    endpoint = f"{etcd.host}:{etcd.port}"
    with pytest.raises(LabError, match="'least_request'.*valid: round_robin, pick_first"):
        registry_channel("routeguide", balancing="least_request", etcd_endpoint=endpoint)
    with pytest.raises(LabError, match="no instance of 'nosuch' is registered.*routeguide"):
        registry_channel("nosuch", etcd_endpoint=endpoint)
    with pytest.raises(LabError, match="service must be"):
        registry_channel("", etcd_endpoint=endpoint)
    closed = worker_host(4, 2)
    closed_port = free_port(closed, 23690)
    with pytest.raises(LabError, match="cannot read the registry"):
        registry_channel("routeguide", etcd_endpoint=f"{closed}:{closed_port}")
    with (
        grpc.insecure_channel(address(trio[0])) as channel,
        pytest.raises(LabError, match="unknown call kind 'oneway'; valid: unary, server_stream"),
    ):
        call_log(channel, 1, "oneway")
    with pytest.raises(LabError, match="unknown service 'nosuch'; known services"):
        gateway_channel("nosuch")


def test_close_stops_the_watch_thread(etcd: Etcd, trio: list[Service]) -> None:
    channel = registry_channel("routeguide", etcd_endpoint=f"{etcd.host}:{etcd.port}")
    wait_until(lambda: channel.watching, "the registry watch to start", timeout=5)
    threads = [t for t in threading.enumerate() if t.name.startswith("registry-")]
    assert {t.name for t in threads} == {"registry-watch:routeguide", "registry-events:routeguide"}
    started = time.monotonic()
    channel.close()
    closing_s = time.monotonic() - started
    assert not channel.following
    assert not any(t.is_alive() for t in threads)
    assert closing_s < 2, closing_s
    with pytest.raises(ValueError, match="closed channel"):
        call_log(channel, 1)


def test_gateway_channel_sends_the_service_authority() -> None:
    """Traefik routes gRPC by authority; a fake gateway shows what the channel sends."""
    host = worker_host(7, 253)
    received = bytearray()
    with socket.create_server((host, 0)) as server:
        server.settimeout(5)

        def accept() -> None:
            connection, _ = server.accept()
            with connection:
                connection.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # empty HTTP/2 SETTINGS
                connection.settimeout(0.2)

                def authority_received() -> bool:
                    received.extend(connection.recv(4096))  # a socket timeout is "not yet"
                    return b"routeguide.localhost" in received

                with contextlib.suppress(LabTimeout):  # the asserts below say what was missing
                    wait_until(authority_received, "the authority", timeout=2, interval=0)

        fake = threading.Thread(target=accept, daemon=True)
        fake.start()
        with gateway_channel("routeguide", f"{host}:{server.getsockname()[1]}") as channel:
            df = call_log(channel, 1, timeout=1)
        fake.join(timeout=5)
    assert received.startswith(b"PRI * HTTP/2.0")  # h2c: cleartext HTTP/2, no TLS
    assert b"routeguide.localhost" in received
    assert df["code"].iloc[0] != "OK"


@dataclass
class Call:
    start: float
    end: float
    code: str
    instance: str


class Load:
    """Unary calls one after another from a thread, through ONE stub made at the start."""

    def __init__(self, channel: grpc.Channel, pause: float = 0.005) -> None:
        self.stub = pb_grpc.RouteGuideStub(channel)
        self.pause = pause
        self.calls: list[Call] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-load", daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        point = pb.Point(latitude=1, longitude=1)
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                _, call = self.stub.GetFeature.with_call(point, timeout=2)
                code = "OK"
            except grpc.RpcError as exc:
                call, code = exc, exc.code().name
            instance = dict(call.initial_metadata() or ()).get("x-instance", "")
            self.calls.append(Call(start, time.monotonic(), code, instance))
            self._stop.wait(self.pause)

    def between(self, start: float, end: float = float("inf")) -> list[Call]:
        return [c for c in list(self.calls) if start <= c.start and c.end <= end]

    def first_from(self, instance: str, after: float) -> Call | None:
        return next((c for c in self.between(after) if c.instance == instance), None)


def test_follows_added_stopped_and_killed_instances(etcd: Etcd, fleet) -> None:
    """One channel and one stub, under steady load, while the registry changes three times."""
    rg = fleet("rgfollow")
    one, two, three = rg.start_registered(1, 2, 3)
    names = {id(s): f"rgfollow-{s.env['LAB_SLOT']}" for s in (one, two, three)}
    channel: DiscoveredChannel
    with (
        registry_channel("rgfollow", etcd_endpoint=f"{etcd.host}:{etcd.port}") as channel,
        Load(channel) as load,
    ):
        states: list[grpc.ChannelConnectivity] = []
        channel.subscribe(states.append)
        recent = lambda: {c.instance for c in load.between(time.monotonic() - 0.5)}  # noqa: E731
        wait_until(lambda: recent() == set(names.values()), "load to reach all three", 5)

        # 1. A fourth instance registers: calls reach it without the caller doing anything.
        four = rg.start(4)
        wait_registered(etcd, four, timeout=20)
        registered = time.monotonic()
        first = wait_until(lambda: load.first_from("rgfollow-4", registered), "calls to 4", 5)
        added_s = first.end - registered
        assert channel.swaps == 1 and address(four) in channel.addresses

        # 2. SIGTERM: the instance revokes its lease, then drains 0.3 s, then stops.
        terminated = time.monotonic()
        one.signal(signal.SIGTERM)
        wait_until(lambda: address(one) not in channel.addresses, "swap after SIGTERM", 2)
        term_swap_s = time.monotonic() - terminated
        time.sleep(1.0)
        after_term = load.between(terminated)
        reached = [c.end - terminated for c in after_term if c.instance == names[id(one)]]
        term_failures = [c for c in after_term if c.code != "OK"]

        # 3. SIGKILL: nothing revokes the lease; the registry forgets it after the TTL.
        killed = time.monotonic()
        two.process.kill()
        wait_until(lambda: address(two) not in channel.addresses, "drop after SIGKILL", 6)
        dropped = time.monotonic()
        kill_drop_s = dropped - killed
        in_ttl_window = load.between(killed, dropped)
        kill_failures = [c for c in in_ttl_window if c.code != "OK"]
        time.sleep(0.5)
        after_drop = load.between(dropped)
        channel.unsubscribe(states.append)

    print(
        f"\nadded: first call {added_s:.3f} s after registration;"
        f"\nSIGTERM: swap after {term_swap_s:.3f} s, {len(reached)} calls reached it after "
        f"the signal (last {max(reached, default=0):.3f} s), {len(term_failures)} failed "
        f"of {len(after_term)};"
        f"\nSIGKILL: dropped after {kill_drop_s:.3f} s, {len(kill_failures)} failed of "
        f"{len(in_ttl_window)} calls in that window "
        f"({[(round(c.start - killed, 3), c.code) for c in kill_failures]});"
        f"\nswaps {channel.swaps}, calls {len(load.calls)}"
    )
    assert added_s < 3
    assert term_swap_s < 1
    assert max(reached, default=0) < 1
    assert term_failures == []
    # Only a call in flight when the process died can fail: round_robin skips the dead
    # subchannel as soon as its connection drops, long before the lease expires.
    assert len(kill_failures) <= 2, kill_failures
    # The lease, refreshed every TTL/3, has between 2/3 TTL and TTL left when the process dies.
    assert LEASE_TTL / 2 < kill_drop_s < LEASE_TTL + 2
    ok_in_window = {c.instance for c in in_ttl_window if c.code == "OK" and c.start > killed + 0.1}
    assert ok_in_window == {names[id(three)], "rgfollow-4"}
    assert all(c.code == "OK" for c in after_drop) and after_drop
    assert channel.swaps == 3
    # Subscriptions move with each swap: every new inner channel reports READY once.
    assert states.count(grpc.ChannelConnectivity.READY) >= 1 + channel.swaps, states


def test_watch_lost_with_etcd_falls_back_then_watches_again(tmp_path: Path) -> None:
    """etcd dies and comes back (as supervisord would restart it): the channel keeps following."""
    ports = free_port(worker_host(4, 1), 23630), free_port(worker_host(4, 1), 23680)
    etcd = start_etcd(tmp_path / "data", *ports)
    rg = Fleet(etcd, "rgrestart", tmp_path)
    try:
        rg.start_registered(1)
        with registry_channel("rgrestart", etcd_endpoint=f"{etcd.host}:{etcd.port}") as channel:
            wait_until(lambda: channel.watching, "the registry watch to start", timeout=5)
            stop_process(etcd.process)
            killed = time.monotonic()
            wait_until(lambda: not channel.watching, "the lost watch to be noticed", timeout=3)
            noticed_s = time.monotonic() - killed
            assert (call_log(channel, 10)["code"] == "OK").all()  # the data path needs no etcd

            etcd = rg.etcd = start_etcd(tmp_path / "data", *ports)
            restarted = time.monotonic()
            wait_until(lambda: channel.watching, "the watch to come back", timeout=5)
            rewatch_s = time.monotonic() - restarted
            (second,) = rg.start_registered(2)
            registered = time.monotonic()
            wait_until(lambda: address(second) in channel.addresses, "the new instance", 2)
            follow_s = time.monotonic() - registered
        print(
            f"\netcd killed: watch loss noticed after {noticed_s:.3f} s; watching again "
            f"{rewatch_s:.3f} s after etcd restarted; new instance followed after {follow_s:.3f} s"
        )
    finally:
        rg.stop()
        stop_process(etcd.process)
