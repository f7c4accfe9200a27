"""Fixtures for the service tests: a private etcd and real service processes.

Every process a test starts is killed at teardown, and its log is printed if the test failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labkit import keyspace
from labkit.backends.local_config import registration_environment

from .support import (
    ROOT,
    STACK,
    Etcd,
    Service,
    admin_token_file,
    lab_service,
    next_host,
    private_etcd,
    stop_process,
)


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    with private_etcd(tmp_path_factory.mktemp("etcd"), 23710, 23810) as server:
        yield server


def _generate_grpc_stubs() -> None:
    """The stubs are generated, not committed: make them as the setup script does.

    At import, not in a fixture: test modules import the stubs when collected.
    """
    if not (STACK / "labstack" / "routeguide_pb2_grpc.py").exists():
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", "-I", "stack", "--python_out=stack",
             "--grpc_python_out=stack", "--pyi_out=stack", "stack/labstack/routeguide.proto"],
            cwd=ROOT,
            check=True,
        )  # fmt: skip


_generate_grpc_stubs()


@pytest.fixture
def spawn(
    etcd: Etcd, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Service]]:
    """Start `python -m labstack.<name>` with LAB_* env; every process is killed at teardown."""
    started: list[Service] = []
    admin_token = admin_token_file(tmp_path)

    def start(name: str, **overrides: str) -> Service:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(STACK), os.environ.get("PYTHONPATH")])),
            "LAB_SERVICE": name,
            "LAB_SLOT": "1",
            "LAB_VERSION": "v1",
            "LAB_HOST": next_host(),
            "LAB_PORT": "18080",
            "LAB_ETCD": etcd.url,
            "LAB_LEASE_TTL": "2",
            **overrides,
        }
        # The admin API on port + 10000, as labkit's topology does, unless the test chose one.
        env.setdefault("LAB_ADMIN_PORT", str(int(env["LAB_PORT"]) + 10000))
        env.setdefault("LAB_ADMIN_TOKEN_FILE", str(admin_token))
        # The etcd keys, as labkit's generated configuration passes them
        env = {**registration_environment(lab_service(name), int(env["LAB_SLOT"])),
               "LAB_REGISTRY_PREFIX": keyspace.registry_prefix(), **env}
        log_path = tmp_path / f"{name}-{len(started)}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", f"labstack.{name}"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        service = Service(process, env, log_path)
        started.append(service)
        return service

    try:
        yield start
    finally:
        for service in started:
            stop_process(service.process)
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            for service in started:
                print(f"--- {service.log_path.name} ---\n{service.log_path.read_text()}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Keep the call-phase report on the test item so fixtures can show logs on failure."""
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report
