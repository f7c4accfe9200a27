"""A private gateway (etcd + Traefik + two backends) shared by this directory's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from harness import Gateway, start_gateway, stop_all

from labkit.policies import Policies


@pytest.fixture(scope="module")
def private_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path_factory.mktemp("gateway"))
    try:
        yield gateway
    finally:
        stop_all(gateway.processes, gateway.backends)


@pytest.fixture
def gateway(private_gateway: Gateway, request: pytest.FixtureRequest) -> Iterator[Gateway]:
    """The bare echo route with healthy backends; Traefik's log is shown if the test failed."""
    private_gateway.reset()
    yield private_gateway
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(private_gateway.log.read_text()[-4000:])


@pytest.fixture
def policies(gateway: Gateway) -> Policies:
    return Policies(gateway.etcd(), gateway.api_url)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
