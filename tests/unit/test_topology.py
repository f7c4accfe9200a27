import pytest

from labkit import topology
from labkit.errors import LabError
from labkit.lab import gateway_target
from labkit.topology import MAX_REPLICAS, SERVICES, check_replicas, infra, service


def test_unknown_service_names_the_known_ones():
    expected = "unknown service 'nope'; known services: auth, echo, routeguide, web"
    with pytest.raises(LabError, match=expected):
        service("nope")


@pytest.mark.parametrize("bad", [-1, MAX_REPLICAS + 1, 2.5, "3", None, True])
def test_replica_count_is_validated(bad):
    with pytest.raises(LabError, match="replica count"):
        check_replicas(bad)


def test_replica_count_bounds_are_accepted():
    assert check_replicas(0) == 0
    assert check_replicas(MAX_REPLICAS) == MAX_REPLICAS


def bound_addresses(block: int) -> list[str]:
    """Every address a lab in `block` binds: infrastructure, and each instance's ports."""
    bound = [endpoint.address for endpoint in infra(block).named().values()]
    for svc in SERVICES.values():
        for slot in range(1, MAX_REPLICAS + 1):
            bound += {endpoint.address for endpoint in svc.endpoints(slot, block).values()}
    return bound


def test_every_instance_has_its_own_address_in_its_labs_block():
    assert service("echo").endpoint(2, block=0).address == "127.0.1.2:8080"
    assert service("echo").endpoint(2, block=7).address == "127.7.1.2:8080"
    assert infra(7).gateway.address == "127.7.0.1:8000" and infra(0).etcd.port == 2379
    for block in (0, 7):
        bound = bound_addresses(block)
        assert len(set(bound)) == len(bound), "two components would bind the same address"


def test_localhost_urls_go_through_the_gateway_with_a_host_header():
    gateway = infra().gateway.url  # this process's lab's
    assert gateway_target("http://echo.localhost/") == (f"{gateway}/", "echo.localhost")
    assert gateway_target("http://web.localhost/x?y=1") == (
        f"{gateway}/x?y=1", "web.localhost")
    assert gateway_target("http://127.0.1.1:8080/") == ("http://127.0.1.1:8080/", None)
    with pytest.raises(LabError, match="not an HTTP or gRPC URL"):
        gateway_target("echo")


def test_without_loopback_aliases_labs_get_distinct_ports_on_127_0_0_1(monkeypatch):
    monkeypatch.setattr(topology, "loopback_aliases_work", lambda: False)
    bound = [a for block in range(topology.FALLBACK_BLOCKS) for a in bound_addresses(block)]
    assert all(address.startswith("127.0.0.1:") for address in bound)
    assert len(set(bound)) == len(bound), "two components of some labs would bind the same port"
    with pytest.raises(LabError, match=f"blocks 0 to {topology.FALLBACK_BLOCKS - 1} exist"):
        infra(topology.FALLBACK_BLOCKS)
