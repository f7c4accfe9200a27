"""Traffic splits against a real Traefik: one transaction, read back, exact weights."""

from __future__ import annotations

from collections import Counter

import httpx
from harness import Gateway, wait_until

from labkit.kv import put_atomically
from labkit.mirroring import Mirrors
from labkit.shifting import Splits, history_key
from labkit.topology import service

ECHO = service("echo")


def splits_with_versions(gateway: Gateway) -> Splits:
    """b1 serves as echo's v1, b2 as its v2 (what instances register, under their version)."""
    put_atomically(gateway.etcd(), {
        f"traefik/http/services/echo-{version}/loadBalancer/servers/1/url": backend.url
        for version, backend in zip(("v1", "v2"), gateway.backends, strict=True)
    })
    return Splits(gateway.etcd(), httpx.Client(base_url=gateway.api_url, timeout=2))


def test_a_split_is_written_in_one_transaction_and_served_exactly(gateway: Gateway) -> None:
    splits = splits_with_versions(gateway)
    splits.apply(ECHO, {"v1": 90, "v2": 10}, history=[None])

    revisions = {meta["mod_revision"] for _, meta in gateway.etcd().get_prefix("traefik/")
                 if "echo-split" in meta["key"].decode() or meta["key"].endswith(b"echo/service")}
    revisions.add(gateway.etcd().get(history_key(ECHO), metadata=True)[0][1]["mod_revision"])
    assert len(revisions) == 1, f"every key of the split in one transaction, saw {revisions}"
    assert splits.current(ECHO) == {"v1": 90, "v2": 10}
    assert splits.served(ECHO) == ({"v1": 90, "v2": 10}, [])
    with httpx.Client(timeout=5) as client:
        served = Counter(gateway.get(client).text for _ in range(100))
    assert served == {"b1": 90, "b2": 10}, "Traefik's weighted round robin splits exactly"


def test_fewer_versions_delete_the_stale_entries_and_off_restores_the_fleet(
        gateway: Gateway) -> None:
    splits = splits_with_versions(gateway)
    splits.apply(ECHO, {"v1": 50, "v2": 50}, history=[None])
    splits.apply(ECHO, {"v2": 100}, history=[None, {"v1": 50, "v2": 50}])
    assert splits.current(ECHO) == {"v2": 100}
    assert splits.history(ECHO) == [None, {"v1": 50, "v2": 50}]
    with httpx.Client(timeout=5) as client:
        assert {gateway.get(client).text for _ in range(10)} == {"b2"}

    splits.apply(ECHO, None, history=[])
    assert splits.current(ECHO) is None and splits.served(ECHO) == (None, [])
    leftovers = [m["key"] for _, m in gateway.etcd().get_prefix("traefik/http/services/echo-split")]
    assert leftovers == []


def test_mirroring_copies_requests_and_stopping_restores_the_route(gateway: Gateway) -> None:
    splits = splits_with_versions(gateway)
    splits.apply(ECHO, {"v1": 100}, history=[None])
    mirrors = Mirrors(gateway.etcd(), httpx.Client(base_url=gateway.api_url, timeout=2))
    v2 = gateway.backends[1]
    mirrors.start(ECHO, "v2", 100)
    assert mirrors.current(ECHO) == ("v2", 100)
    assert splits.current(ECHO) == {"v1": 100}, "the split still decides who answers"
    before = v2.hits
    with httpx.Client(timeout=5) as client:
        answers = Counter(gateway.get(client).text for _ in range(20))
    assert answers == {"b1": 20}, "clients get v1's answers only"
    wait_until(lambda: v2.hits - before == 20, "v2 to receive the 20 copies", timeout=5)

    mirrors.stop(ECHO)
    assert mirrors.current(ECHO) is None and splits.current(ECHO) == {"v1": 100}
    leftovers = gateway.etcd().get_prefix("traefik/http/services/echo-mirror")
    assert leftovers == []
    with httpx.Client(timeout=5) as client:
        assert {gateway.get(client).text for _ in range(5)} == {"b1"}
