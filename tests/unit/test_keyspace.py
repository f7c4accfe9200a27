"""The etcd key layout is defined once: an instance registers where labkit and Traefik look."""

import configparser
import json

import pytest
from labstack.registration import registration_keys
from labstack.settings import Settings

from labkit import keyspace
from labkit.backends import local_config
from labkit.gateway import route_keys, server_key
from labkit.registry import PREFIX
from labkit.topology import SERVICES, service


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_an_instance_registers_where_labkit_and_the_gateway_look(tmp_path, name):
    svc, slot, pid = service(name), 3, 4242
    env = local_config.instance_environment(tmp_path, svc, slot)
    release = tmp_path / "v2.json"
    release.write_text(json.dumps(svc.release("v2").environment()))
    settings = Settings.from_env({**env, "LAB_RELEASE_FILE": str(release)})  # now runs v2

    fleet, by_version, record = registration_keys(settings, pid)

    assert fleet == server_key(svc, slot), "labkit waits for the instance under this key"
    assert by_version == keyspace.server_key(svc.version_service("v2"), slot)
    # both are servers of load balancers the gateway's routes define, under Traefik's root
    defined = {key.removesuffix("/passHostHeader") for key in route_keys(svc)
               if key.endswith("/loadBalancer/passHostHeader")}
    for key in (fleet, by_version):
        assert key.removesuffix(f"/servers/{slot}/url") in defined
    root = local_config.traefik_static(tmp_path)["providers"]["etcd"]["rootKey"]
    assert fleet.startswith(root + "/")
    # labkit's registry (and the gRPC client) read records under the service's prefix
    assert record == f"{PREFIX}{name}/{svc.instance_id(slot)}/{pid}"
    assert record.startswith(keyspace.registry_prefix(name))


def test_promsd_reads_the_registry_where_instances_write(tmp_path):
    conf = configparser.RawConfigParser()
    conf.read_string(local_config.supervisord_conf(tmp_path))
    assert f'LAB_REGISTRY_PREFIX="{PREFIX}"' in conf["program:promsd"]["environment"]
