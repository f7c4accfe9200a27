import base64
import os
import socket

import pandas as pd
import pytest

from labkit.errors import LabError, LabTimeout
from labkit.ports import ensure_free, is_free
from labkit.readback import ReadBack
from labkit.topology import Endpoint
from labkit.waits import wait_for


def test_wait_returns_the_first_truthy_value():
    values = iter([0, None, "ready"])
    assert wait_for(lambda: next(values), what="x", timeout=2, interval=0.01) == "ready"


def test_wait_takes_a_dataframe_once_it_has_rows():
    frames = iter([pd.DataFrame(), pd.DataFrame({"a": [1]})])
    assert len(wait_for(lambda: next(frames), what="rows", timeout=2, interval=0.01)) == 1


def test_wait_timeout_explains_itself():
    def probe():
        raise ConnectionRefusedError("port closed")

    with pytest.raises(LabTimeout) as caught:
        wait_for(probe, what="the thing", timeout=0.2, interval=0.05,
                 diagnose=lambda: "thing: FATAL\nlast log line", hint="check the thing")
    message = str(caught.value)
    assert "waiting for the thing" in message
    assert "ConnectionRefusedError: port closed" in message
    assert "last log line" in message
    assert "Hint: check the thing" in message


def test_busy_port_is_reported_with_its_holder():
    with socket.socket() as held:
        held.bind(("127.0.8.200", 0))
        held.listen()
        endpoint = Endpoint("127.0.8.200", held.getsockname()[1])
        assert not is_free(endpoint)
        with pytest.raises(LabError) as caught:
            ensure_free([("traefik web", endpoint)])
    message = str(caught.value)
    assert f"traefik web needs {endpoint.address}" in message
    assert f"pid {os.getpid()}" in message
    assert "nothing was started" in message
    assert is_free(endpoint)


def test_a_lab_error_in_the_probe_ends_the_wait_at_once():
    def crashed():
        raise LabError("traefik failed to start: FATAL")

    with pytest.raises(LabError, match="FATAL") as caught:
        wait_for(crashed, what="traefik", timeout=30)
    assert not isinstance(caught.value, LabTimeout)


class FakeEtcd:
    """Applies kv.transact's transactions to a dict; Traefik 'serves' what etcd holds."""

    def __init__(self, keys: dict[str, str]):
        self.keys = dict(keys)
        self.transactions = 0

    def transaction(self, txn: dict) -> None:
        self.transactions += 1
        for request in txn["success"]:
            op = request.get("request_put") or request["request_delete_range"]
            key = base64.b64decode(op["key"]).decode()
            if "value" in op:
                self.keys[key] = base64.b64decode(op["value"]).decode()
            else:
                self.keys.pop(key)


def test_readback_returns_once_traefik_serves_the_new_keys():
    etcd = FakeEtcd({"a": "1"})
    served = lambda state: None if etcd.keys == dict(state) else "not yet"  # noqa: E731
    ReadBack(etcd, timeout=1).apply({"a": "1"}, {"b": "2"}, served=served, errors=list,
                                    what="x", restored="restored")
    assert etcd.keys == {"b": "2"} and etcd.transactions == 1


def test_readback_rolls_back_at_traefiks_first_error():
    etcd = FakeEtcd({"a": "1"})
    errors = lambda: ["bad key"] if "b" in etcd.keys else []  # noqa: E731
    with pytest.raises(LabError) as caught:
        ReadBack(etcd, timeout=5).apply({"a": "1"}, {"b": "2"}, served=lambda state: None,
                                        errors=errors, what="b", restored="a is back")
    assert str(caught.value) == "Traefik did not apply b: Traefik reports: bad key; a is back"
    assert etcd.keys == {"a": "1"}


def test_readback_rolls_back_a_change_never_served():
    etcd = FakeEtcd({"a": "1"})
    served = lambda state: None if "b" not in state else "frozen"  # noqa: E731
    with pytest.raises(LabError, match=r"did not apply b: frozen after 0.1 s; a is back$"):
        ReadBack(etcd, timeout=0.1).apply({"a": "1"}, {"b": "2"}, served=served, errors=list,
                                          what="b", restored="a is back")
    assert etcd.keys == {"a": "1"} and etcd.transactions == 2
