import pytest

from labkit.errors import LabError
from labkit.lab import gateway_target
from labkit.topology import MAX_REPLICAS, SERVICES, check_replicas, service


def test_unknown_service_names_the_known_ones():
    expected = "unknown service 'nope'; known services: echo, routeguide, web"
    with pytest.raises(LabError, match=expected):
        service("nope")


@pytest.mark.parametrize("bad", [-1, MAX_REPLICAS + 1, 2.5, "3", None, True])
def test_replica_count_is_validated(bad):
    with pytest.raises(LabError, match="replica count"):
        check_replicas(bad)


def test_replica_count_bounds_are_accepted():
    assert check_replicas(0) == 0
    assert check_replicas(MAX_REPLICAS) == MAX_REPLICAS


def test_every_instance_has_its_own_address():
    addresses = {
        svc.endpoint(slot).address
        for svc in SERVICES.values()
        for slot in range(1, MAX_REPLICAS + 1)
    }
    assert len(addresses) == len(SERVICES) * MAX_REPLICAS
    assert service("echo").endpoint(2).address == "127.0.1.2:8080"


def test_grpc_instances_are_reached_over_h2c():
    assert service("routeguide").server_scheme == "h2c"
    assert service("echo").server_scheme == "http"


def test_localhost_urls_go_through_the_gateway_with_a_host_header():
    assert gateway_target("http://echo.localhost/") == ("http://127.0.0.1:8000/", "echo.localhost")
    assert gateway_target("http://web.localhost/x?y=1") == (
        "http://127.0.0.1:8000/x?y=1", "web.localhost")
    assert gateway_target("http://127.0.1.1:8080/") == ("http://127.0.1.1:8080/", None)
    with pytest.raises(LabError, match="not an HTTP or gRPC URL"):
        gateway_target("echo")


def test_without_loopback_aliases_instances_get_distinct_ports_on_127_0_0_1(monkeypatch):
    import labkit.topology as topology
    from labkit.backends.local import INFRA_ENDPOINTS

    monkeypatch.setattr(topology, "loopback_aliases_work", lambda: False)
    per_instance = [
        {endpoint.address for endpoint in svc.endpoints(slot).values()}
        for svc in SERVICES.values()
        for slot in range(1, MAX_REPLICAS + 1)
    ]
    bound = [address for addresses in per_instance for address in addresses]
    bound += [endpoint.address for endpoint in INFRA_ENDPOINTS.values()]
    assert all(address.startswith("127.0.0.1:") for address in bound)
    assert len(set(bound)) == len(bound), "two components would bind the same port"
