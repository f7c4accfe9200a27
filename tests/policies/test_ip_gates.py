"""Client-address gates (deny and allow lists) against a real Traefik and etcd: a gated client
gets 403 on every route of the service, the others are served, a TTL lifts the gate."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from harness import HOST, Gateway, wait_until
from services.support import worker_host

from labkit.errors import LabError
from labkit.gateway import VERSION_HEADER
from labkit.policies import Policies

BLOCKED, OTHER = worker_host(6, 66), worker_host(6, 67)


def statuses(gateway: Gateway, source: str, n: int = 4, headers: dict | None = None) -> list[int]:
    """What `n` requests from the client address `source` get."""
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=5) as client:
        return [client.get(f"{gateway.web_url}/", headers={"Host": HOST, **(headers or {})})
                .status_code for _ in range(n)]


def test_deny_answers_403_to_the_client_alone_on_every_route(gateway: Gateway,
                                                              policies: Policies) -> None:
    policies.retry("echo")  # another policy in force stays in force
    policies.deny("echo", BLOCKED)

    assert statuses(gateway, BLOCKED) == [403] * 4
    assert statuses(gateway, BLOCKED, headers={VERSION_HEADER: "v1"}) == [403] * 4
    assert statuses(gateway, OTHER) == [200] * 4
    table = policies.policies("echo").set_index("policy")
    assert table.loc["ip-deny", "settings"] == f"clients={BLOCKED}/32"
    assert table.loc["ip-deny", "status"] == "enabled" and "retry" in table.index

    policies.remove("echo", "ip-deny")
    assert statuses(gateway, BLOCKED) == [200] * 4
    assert list(policies.policies("echo")["policy"]) == ["retry"]


def test_allow_serves_only_the_listed_network(gateway: Gateway, policies: Policies) -> None:
    policies.allow("echo", [f"{OTHER}/32"])

    assert statuses(gateway, OTHER) == [200] * 4
    assert statuses(gateway, BLOCKED) == [403] * 4
    policies.clear("echo")
    assert statuses(gateway, BLOCKED) == [200] * 4


def test_a_deny_with_a_ttl_lifts_by_itself(gateway: Gateway, policies: Policies) -> None:
    began = time.monotonic()
    policies.deny("echo", BLOCKED, ttl="3s")
    assert statuses(gateway, BLOCKED, n=1) == [403]
    settings = policies.policies("echo").set_index("policy").loc["ip-deny", "settings"]
    assert re.fullmatch(rf"clients={BLOCKED}/32, expires in [123] s", settings), settings

    wait_until(lambda: statuses(gateway, BLOCKED, n=1) == [200], "the deny to expire",
               timeout=10)
    # etcd deletes the keys at the lease's expiry (3 s, granted in whole seconds)
    assert time.monotonic() - began >= 2.5
    assert policies.policies("echo").empty


GATE_BAD_CALLS = {
    "not an address": (lambda p: p.deny("echo", "localhost"), "'localhost' is not one"),
    "bad network": (lambda p: p.deny("echo", ["127.0.0.1/33"]), "is not one"),
    "no clients": (lambda p: p.allow("echo", []), "got 0 of them"),
    "not a string": (lambda p: p.deny("echo", [2130706433]), "is not one"),
    "zero ttl": (lambda p: p.deny("echo", BLOCKED, ttl=0), "ttl must be greater than zero"),
    "bad ttl": (lambda p: p.deny("echo", BLOCKED, ttl="soon"), "ttl must be"),
    "unknown service": (lambda p: p.deny("nope", BLOCKED), "unknown service 'nope'"),
}


@pytest.mark.parametrize("case", GATE_BAD_CALLS, ids=list(GATE_BAD_CALLS))
def test_bad_gates_write_nothing(gateway: Gateway, policies: Policies, case: str) -> None:
    call, message = GATE_BAD_CALLS[case]
    policies.deny("echo", OTHER)  # something in force, to show it is left alone
    before = gateway.snapshot()

    with pytest.raises(LabError, match=re.escape(message)):
        call(policies)

    assert gateway.snapshot() == before
    assert statuses(gateway, BLOCKED, n=2) == [200, 200]
