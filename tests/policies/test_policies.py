"""Gateway policies against a real Traefik: real requests, real etcd, real rejections."""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from harness import Gateway, wait_until

import labkit.policies
from labkit import keyspace
from labkit.errors import LabError
from labkit.policies import Policies


def api(gateway: Gateway, path: str) -> dict:
    return httpx.get(f"{gateway.api_url}{path}", timeout=2).json()


def test_retry_hides_a_dead_backend(gateway: Gateway, policies: Policies) -> None:
    # No active health check here: it keeps the dead backend in the rotation. (With one, a
    # check that runs just after the kill ejects it before any request meets it: seen.)
    gateway.etcd().delete_prefix(f"{keyspace.balancer('echo')}/loadBalancer/healthCheck")
    wait_until(lambda: "healthCheck" not in api(gateway, "/api/http/services/echo@etcd")
               ["loadBalancer"], "the health check gone", timeout=5)
    gateway.backends[1].kill()
    assert 502 in gateway.statuses(20)  # round robin sends every other request to the dead one
    gateway.backends[1].start()
    policies.retry("echo", attempts=3, initial_interval="10ms")
    wait_until(lambda: gateway.statuses(4) == [200] * 4, "b2 back", timeout=5)

    gateway.backends[1].kill()
    assert gateway.statuses(20) == [200] * 20
    table = policies.policies("echo")
    assert table.to_dict("records") == [
        {"policy": "retry", "settings": "attempts=3, initialInterval=10ms", "status": "enabled"}
    ]


def test_rate_limit_rejects_a_burst(gateway: Gateway, policies: Policies) -> None:
    policies.rate_limit("echo", average=5, burst=3)

    counts = Counter(gateway.statuses(20))
    assert counts[429] >= 10 and counts[200] >= 3, counts


def test_rate_limit_per_header_counts_each_value(gateway: Gateway, policies: Policies) -> None:
    policies.rate_limit("echo", average=1, burst=1, per="header:X-User")

    with httpx.Client(timeout=5) as client:
        first = [client.get(f"{gateway.web_url}/", headers={"Host": "echo.localhost",
                                                           "X-User": user}).status_code
                 for user in ("ann", "bob", "ann")]  # fmt: skip
    assert first == [200, 200, 429]


def test_circuit_breaker_opens_and_fails_fast(gateway: Gateway, policies: Policies) -> None:
    for backend in gateway.backends:
        backend.mode = "fail"
    policies.circuit_breaker(
        "echo", "ResponseCodeRatio(500, 600, 0, 600) > 0.5", check_period="100ms",
        fallback_duration="10s", recovery_duration="1s",
    )  # fmt: skip

    deadline = time.monotonic() + 5
    with httpx.Client(timeout=5) as client:
        while (response := gateway.get(client)).status_code != 503:
            assert response.status_code == 500 and time.monotonic() < deadline
            time.sleep(0.02)
    assert response.text != "b1" and response.text != "b2"  # Traefik's own 503, not a backend
    assert response.elapsed.total_seconds() < 0.2
    row = policies.policies("echo").iloc[0]
    assert (row.policy, row.status) == ("circuit-breaker", "enabled")
    assert "ResponseCodeRatio(500, 600, 0, 600) > 0.5" in row.settings


def test_timeout_turns_a_slow_backend_into_504(gateway: Gateway, policies: Policies) -> None:
    for backend in gateway.backends:
        backend.mode, backend.delay = "slow", 0.5
    policies.timeout("echo", response_header=0.2, dial="1s")  # seconds or a Go duration

    with httpx.Client(timeout=5) as client:
        response = gateway.get(client)
    assert response.status_code == 504
    assert response.elapsed.total_seconds() < 0.45
    service = api(gateway, "/api/http/services/echo@etcd")
    assert service["loadBalancer"]["serversTransport"] == "echo@etcd"
    settings = policies.policies("echo").set_index("policy").settings["timeout"]
    assert "responseHeaderTimeout=200ms" in settings and "dialTimeout=1s" in settings


def test_in_flight_limits_concurrent_requests(gateway: Gateway, policies: Policies) -> None:
    for backend in gateway.backends:
        backend.mode, backend.delay = "slow", 0.5
    policies.in_flight("echo", amount=1, per=None)

    with ThreadPoolExecutor(3) as pool:
        statuses = sorted(pool.map(lambda _: gateway.statuses(1)[0], range(3)))
    assert statuses == [200, 429, 429]


def test_p2c_and_sticky_are_visible_and_removable(gateway: Gateway, policies: Policies) -> None:
    policies.strategy("echo", "p2c")
    policies.sticky("echo", cookie="lab_sticky")

    balancer = api(gateway, "/api/http/services/echo@etcd")["loadBalancer"]
    assert balancer["strategy"] == "p2c"
    assert balancer["sticky"]["cookie"]["name"] == "lab_sticky"
    with httpx.Client(timeout=5, headers={"Host": "echo.localhost"}) as client:
        first = client.get(f"{gateway.web_url}/")
        assert "lab_sticky" in first.cookies
        again = {client.get(f"{gateway.web_url}/").text for _ in range(10)}
    assert again == {first.text}  # the cookie pins the client to one backend
    assert list(policies.policies("echo").policy) == ["strategy", "sticky"]

    policies.remove("echo", "strategy")
    assert api(gateway, "/api/http/services/echo@etcd")["loadBalancer"]["strategy"] == "wrr"
    policies.clear("echo")
    assert policies.policies("echo").empty
    assert "sticky" not in api(gateway, "/api/http/services/echo@etcd")["loadBalancer"]


def test_router_chain_is_ordered_and_renumbered(gateway: Gateway, policies: Policies) -> None:
    policies.retry("echo")
    policies.rate_limit("echo", average=100, burst=50)
    policies.circuit_breaker("echo", "NetworkErrorRatio() > 0.5")
    assert api(gateway, "/api/http/routers/echo@etcd")["middlewares"] == [
        "echo-rate-limit@etcd", "echo-circuit-breaker@etcd", "echo-retry@etcd",
    ]  # fmt: skip

    policies.remove("echo", "rate-limit")

    chain = {k: v for k, v in gateway.snapshot().items() if "/routers/echo/middlewares/" in k}
    assert chain == {
        "traefik/http/routers/echo/middlewares/0": "echo-circuit-breaker",
        "traefik/http/routers/echo/middlewares/1": "echo-retry",
    }
    assert not any("echo-rate-limit" in k for k in gateway.snapshot())
    assert gateway.statuses(3) == [200] * 3


BAD_CALLS: dict[str, tuple[Callable[[Policies], None], str]] = {
    "unknown service": (lambda p: p.retry("nope"), "known services: auth, echo, routeguide, web"),
    "unknown policy": (
        lambda p: p.remove("echo", "bulkhead"), "valid policies: ip-deny, ip-allow, rate-limit"
    ),
    "negative attempts": (lambda p: p.retry("echo", attempts=-1), "attempts must be"),
    "zero rate": (lambda p: p.rate_limit("echo", average=0), "average must be"),
    "negative burst": (lambda p: p.rate_limit("echo", 5, burst=-3), "burst must be"),
    "bad per": (lambda p: p.rate_limit("echo", 5, per="cookie"), "'ip', 'header:<Name>'"),
    "bad header": (lambda p: p.in_flight("echo", 2, per="header:a b"), "header name"),
    "not a duration": (lambda p: p.timeout("echo", "2 seconds"), "such as '250ms', '1.5s'"),
    "unitless string": (lambda p: p.retry("echo", initial_interval="100"), "initial_interval"),
    "zero duration": (lambda p: p.rate_limit("echo", 5, period=0), "period must be greater"),
    "negative duration": (lambda p: p.timeout("echo", dial=-1), "dial must be a finite"),
    "nan duration": (lambda p: p.timeout("echo", float("nan")), "response_header must be"),
    "bool duration": (lambda p: p.retry("echo", initial_interval=True), "initial_interval"),
    "bad strategy": (lambda p: p.strategy("echo", "random"), "wrr, p2c"),
    "bad cookie": (lambda p: p.sticky("echo", cookie="a;b"), "cookie must be"),
    "unknown metric": (lambda p: p.circuit_breaker("echo", "ErrorRate() > 0.5"), "unknown metric"),
    "argument count": (
        lambda p: p.circuit_breaker("echo", "ResponseCodeRatio(500, 600) > 0.5"), "expected ,"
    ),
    "no comparison": (lambda p: p.circuit_breaker("echo", "NetworkErrorRatio()"), "expected more"),
    "bad operator": (lambda p: p.circuit_breaker("echo", "NetworkErrorRatio() => 0.5"), "'='"),
    "ratio vs int": (lambda p: p.circuit_breaker("echo", "NetworkErrorRatio() > 1"), "decimal"),
    "latency vs decimal": (
        lambda p: p.circuit_breaker("echo", "LatencyAtQuantileMS(50.0) > 100.5"), "whole"
    ),
    "dangling and": (
        lambda p: p.circuit_breaker("echo", "NetworkErrorRatio() > 0.5 &&"), "the end"
    ),
}


@pytest.mark.parametrize("case", BAD_CALLS, ids=list(BAD_CALLS))
def test_bad_input_writes_nothing(gateway: Gateway, policies: Policies, case: str) -> None:
    call, message = BAD_CALLS[case]
    policies.retry("echo")  # something in force, to show it is left alone
    before = gateway.snapshot()

    with pytest.raises(LabError, match=re.escape(message)) as error:
        call(policies)

    assert gateway.snapshot() == before
    assert gateway.statuses(2) == [200, 200]
    if "expression" in str(error.value):
        assert "valid: NetworkErrorRatio()" in str(error.value)


def test_change_traefik_rejects_is_rolled_back(
    gateway: Gateway, policies: Policies, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies.retry("echo")
    before = gateway.snapshot()
    # let an expression through that only Traefik's type checks reject (it disables the router)
    monkeypatch.setattr(labkit.policies, "check_expression", lambda expression: expression)

    with pytest.raises(LabError, match="Traefik reports: expected int, got int"):
        policies.circuit_breaker("echo", "NetworkErrorRatio() > 1")

    assert gateway.snapshot() == before
    assert gateway.statuses(3) == [200] * 3
    assert list(policies.policies("echo").policy) == ["retry"]


def test_change_that_never_shows_up_is_rolled_back(
    gateway: Gateway, policies: Policies, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = gateway.snapshot()
    policies.readback.timeout = 0.3
    real = policies.served.difference
    # the readback never confirms the new state (as when the provider is frozen)
    monkeypatch.setattr(policies.served, "difference", lambda service, state: (
        "frozen" if state else real(service, state)))  # fmt: skip

    with pytest.raises(LabError, match="did not apply retry for echo: frozen"):
        policies.retry("echo")

    assert gateway.snapshot() == before
    assert gateway.statuses(2) == [200, 200]
